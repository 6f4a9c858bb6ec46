"""Payload capture: sampled requests and their answers, as JSON Lines in Blob Storage.

    http (wsgi.py: request id, sampling, one record handed over after the answer is
    rendered) -> buffer (sink.py: bounded; full means dropped and counted) -> a background
    loop (sink.py: records encoded, records.py, into blocks of bounded size and age) ->
    Blob Storage with the pod's workload identity (uploader.py), under
    ``<deployment>/<yyyy>/<mm>/<dd>/<hh>/<uuid>.jsonl``.

The request path pays for a sampling decision and, for a sampled request, one append to
the buffer; hashing, encoding and uploading happen in the loop, which yields to the
requests (docs/capture.md). Nothing here can fail or slow a request: a full buffer, a slow
or missing Blob Storage, lose records, counted in the ``scoring_capture_*`` metrics.
"""

from .records import Entry
from .sink import Capture

__all__ = ["Capture", "Entry", "from_config"]


def from_config(config, model, uploader=None) -> Capture:
    """The worker's capture, from ``Var.CAPTURE_*``; ``uploader`` defaults to Blob
    Storage with the pod's workload identity."""
    from ..model_store.stats import read_stats
    from .uploader import workload_uploader
    return Capture(
        uploader if uploader is not None else workload_uploader(config.capture_uri),
        deployment=config.deployment_name or "local",
        model={"name": config.model_name, "version": config.model_version,
               "digest": read_stats(config.model_dir).digest},
        rank=model.postprocess, keep_images=config.capture_images,
        buffer_bytes=config.capture_buffer_bytes, block_bytes=config.capture_block_bytes,
        block_seconds=config.capture_block_seconds)

