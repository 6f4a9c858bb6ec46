"""Publish a SavedModel directory to Blob Storage under its content-addressed prefix.

    python -m scoring_tools.publish_model path/to/saved_model \
        --account-url https://<account>.blob.core.windows.net --container models --name resnet50

The same layout the stack uploads (infra/model_store.py): every file under
``<name>/<sha256 of the manifest>/``, then ``manifest.json`` last, so a reader that
finds the manifest finds every file it lists. Prints the prefix and the digest: give
them to a deployment as ``modelUri`` (and the digest is what the Deployment checks).
Signs in with azure-identity's DefaultAzureCredential (``az login``); needs
Storage Blob Data Contributor on the container. Never uses an account key.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scoring_app.model_store import manifest as mf


def publish(model_dir, container_client, name: str) -> tuple[str, str]:
    """Upload ``model_dir``; returns (prefix, digest). Uploading the same prefix again
    writes the same bytes (its name is its content)."""
    entries = mf.build(model_dir)
    data = mf.encode(entries)
    digest = mf.digest(data)
    prefix = mf.prefix(name, digest)
    root = Path(model_dir)
    for entry in entries:
        with open(root / entry.path, "rb") as handle:
            container_client.upload_blob(f"{prefix}/{entry.path}", handle, length=entry.size,
                                         overwrite=True)
    container_client.upload_blob(f"{prefix}/{mf.MANIFEST_NAME}", data, overwrite=True)
    return prefix, digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--account-url", required=True)
    parser.add_argument("--container", default="models")
    parser.add_argument("--name", required=True, help="model name: the prefix's first part")
    args = parser.parse_args(argv)
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import ContainerClient
    client = ContainerClient(args.account_url, args.container, credential=DefaultAzureCredential())
    try:
        prefix, digest = publish(args.model_dir, client, args.name)
    except mf.ManifestError as exc:
        print(f"publish failed: {exc}", file=sys.stderr)
        return 1
    print(f"modelUri: {args.account_url.rstrip('/')}/{args.container}/{prefix}")
    print(f"sha256:   {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
