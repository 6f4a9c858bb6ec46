"""The wire protocols the service speaks, each a codec: parse a request, call
the ``Service``, encode the answer, and write an error in its own shape.

- ``score``: the 2019 clients' ``POST /score``, and the error shape of every
  route outside /v2; ``probes``: liveness, readiness, the OpenAPI document
  (``openapi``);
- ``v2``: the open inference protocol (KServe v2, Triton's HTTP API), its
  tensors on the wire in ``v2_tensors``.
"""
