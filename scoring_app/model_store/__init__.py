"""Models as data: a SavedModel published to Azure Blob Storage under a
content-addressed prefix, and the init container's command that pulls it back.

``manifest`` is stdlib only: the stack (infra/model_store.py) imports it to build the
prefix it uploads, and the fetch checks the download with the same code. ``fetch``
is the init container's command (``python3 -m scoring_app.model_store.fetch``;
docs/contract.md, "Models as data").
"""
