"""The wire protocols the service speaks, each one module: how a request is
parsed, and how an answer and an error are written.

- ``score``: the 2019 clients' ``POST /score`` (raw image bytes, or JSON
  ``instances``), and the error shape ``{"error": {"code", "message"}}`` every
  non-v2 route answers with;
- ``v2``: the open inference protocol (KServe v2, Triton's HTTP API), its
  tensors on the wire in ``v2_tensors``.

Both read the body with ``http.body``, parse JSON with ``http.jsonio`` and
map exceptions with ``http.errors``: one reader, one parser, one mapping.
"""
