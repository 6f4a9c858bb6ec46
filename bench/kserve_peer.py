"""KServe's Python model server serving the benchmark's SavedModel: the server users leaving
Azure ML often try first, as a peer in the same turns.

Runs in a venv of its own (``bench/kserve-venv.sh``: kserve brings FastAPI, uvicorn, pandas
and grpcio-tools, which the app does not need), never in the test path's. A ``kserve.Model``
whose ``predict`` calls the SavedModel's signature, as KServe's custom-model example writes
it: a plain (not async) ``predict``, so the server's event loop runs it, one request at a
time. It is unbatched: KServe's request batching lives in its agent, a Go sidecar that the
cluster's controller injects beside the model server and that cannot run here. It speaks
KServe's v1 protocol (TensorFlow Serving's REST API) on 127.0.0.1: the load POSTs
``{"instances": [{"image": {"b64": ...}}]}`` (``v1_body``), binary values in base64 as
KServe's image examples send them.

``python bench/kserve_peer.py --model-dir D --port P``
"""
import argparse
import base64
import json
import logging
import os
import sys
from pathlib import Path

MODEL = "model"


def v1_body(image: bytes) -> bytes:
    """One v1 predict request carrying ``image`` as one base64 instance."""
    return json.dumps({"instances": [{"image": {"b64": base64.b64encode(image).decode("ascii")}}]}).encode()


def decode_instances(payload: dict) -> list[bytes]:
    """The image bytes of a v1 request's instances; ValueError names what is wrong."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise ValueError('expected {"instances": [{"image": {"b64": "..."}}, ...]}')
    try:
        return [base64.b64decode(instance["image"]["b64"], validate=True) for instance in instances]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f'each instance must be {{"image": {{"b64": "..."}}}}: {exc}') from None


def _loopback_only() -> None:
    """KServe's REST server binds 0.0.0.0 (``host`` is fixed in kserve.protocol.rest.server);
    the benchmark listens on 127.0.0.1 only, so the host is changed before uvicorn binds."""
    from kserve.protocol.rest import server

    plain_init = server.RESTServer.__init__

    def init(self, *args, **kwargs):
        plain_init(self, *args, **kwargs)
        self.config.host = "127.0.0.1"

    server.RESTServer.__init__ = init


def _model(model_dir: Path):
    import kserve
    import tensorflow as tf
    from kserve.errors import InvalidInput

    class SavedModelScorer(kserve.Model):
        def load(self) -> bool:
            self.infer = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
            (self.input_name,) = self.infer.structured_input_signature[1]
            (self.output_name,) = self.infer.structured_outputs
            self.ready = True
            return self.ready

        def predict(self, payload, headers=None):
            try:
                images = decode_instances(payload)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
            scores = self.infer(**{self.input_name: tf.constant(images)})[self.output_name]
            return {"predictions": scores.numpy().tolist()}

    model = SavedModelScorer(MODEL)
    model.load()
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # kserve.model_server parses sys.argv when imported: it must see none of ours
    sys.argv = sys.argv[:1]
    import kserve

    _loopback_only()
    model = _model(args.model_dir)
    print(f"kserve serving {args.model_dir} on 127.0.0.1:{args.port}", flush=True)
    # one process (KServe's default), as ours runs one worker; no gRPC
    server = kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1,
                                enable_latency_logging=False)
    # ModelServer() has just configured logging. Ours writes no line per request, so neither
    # does this peer: uvicorn's access log and KServe's timing trace are raised to warnings.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
