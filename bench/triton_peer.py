"""NVIDIA Triton, through PyTriton, serving the benchmark's SavedModel: the field's reference
server as a peer in the same turns.

Runs in a venv of its own (PyTriton pins numpy<2; the app's venv has numpy 2), made by
``bench/triton-venv.sh``, never in the test path's. PyTriton starts the ``tritonserver``
binary its wheel ships, and a Python model process bound to it: the SavedModel's signature
is called there, behind Triton's ``DynamicBatcher``, so Triton's own batching is measured,
not ours. It speaks the v2 (KServe open inference) protocol on 127.0.0.1; the load sends
the same JPEG as a BYTES tensor in the binary tensor extension (``v2_body``).

``python bench/triton_peer.py --model-dir D --port P [--max-batch B] [--delay-us U]``
"""
import argparse
import json
import os
import struct
import sys
from pathlib import Path

MODEL = "model"
INPUT, OUTPUT = "images", "scores"


def v2_body(image: bytes) -> tuple[bytes, int]:
    """One v2 infer request carrying ``image`` as a [1, 1] BYTES tensor in binary form:
    (the body, the length of its JSON header, for ``Inference-Header-Content-Length``).
    Scores come back as JSON, as /score's do."""
    raw = struct.pack("<I", len(image)) + image  # BYTES elements: a 4-byte length, then the bytes
    header = json.dumps({"inputs": [{"name": INPUT, "shape": [1, 1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": OUTPUT, "parameters": {"binary_data": False}}]}).encode()
    return header + raw, len(header)


def _own_libpython_first() -> None:
    """Triton's Python stub links ``libpython3.X.so.1.0`` by name, and finds the system's
    (Debian's 3.11.2 here) before this interpreter's, whose standard library it then runs:
    ``multiprocessing`` fails there (``RLock._recursion_count``, new in a later 3.11). The
    stub is Triton's child, so the interpreter's own library directory goes first in its path."""
    import sysconfig
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and (Path(libdir) / sysconfig.get_config_var("INSTSONAME")).exists():
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--delay-us", type=int, default=int(os.environ.get("BENCH_TRITON_DELAY_US", "2000")),
                        help="DynamicBatcher's max_queue_delay_microseconds (default BENCH_TRITON_DELAY_US, else 2000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _own_libpython_first()

    import numpy as np
    import tensorflow as tf
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    infer = tf.saved_model.load(str(args.model_dir)).signatures["serving_default"]
    (input_name,) = infer.structured_input_signature[1]
    (output_name,) = infer.structured_outputs

    @batch
    def score(images):
        batch_ = tf.constant([row[0] for row in images])
        return {OUTPUT: infer(**{input_name: batch_})[output_name].numpy().astype(np.float32)}

    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, allow_grpc=False,
                          allow_metrics=False, log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(model_name=MODEL, infer_func=score,
                    inputs=[Tensor(name=INPUT, dtype=bytes, shape=(1,))],
                    outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(max_batch_size=args.max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=args.delay_us)))
        print(f"triton serving {args.model_dir} on 127.0.0.1:{args.port}", flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
