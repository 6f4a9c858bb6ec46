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
import time
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
    parser.add_argument("--expect-sha256", help="refuse unless the directory still has this "
                        "digest (the stack passes what it planned with)")
    parser.add_argument("--wait-for-role-s", type=float, default=600,
                        help="retry a 403 this long: a new role assignment takes minutes to apply")
    args = parser.parse_args(argv)
    from azure.core.exceptions import HttpResponseError
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import ContainerClient
    try:
        # the fetch's name rules and bounds, before any sign-in: a model every pod would
        # refuse is never published
        actual = mf.digest(mf.encode(mf.build(args.model_dir)))
        if args.expect_sha256 and actual != args.expect_sha256:
            raise mf.ManifestError(f"{args.model_dir} changed since the plan: sha256 {actual}, "
                                   f"planned {args.expect_sha256}; run `pulumi up` again")
        client = ContainerClient(args.account_url, args.container,
                                 credential=DefaultAzureCredential())
        deadline = time.monotonic() + args.wait_for_role_s
        while True:
            try:
                prefix, digest = publish(args.model_dir, client, args.name)
                break
            except HttpResponseError as exc:
                if exc.status_code != 403 or time.monotonic() > deadline:
                    raise
                print("403 from the account: waiting for the role assignment to apply",
                      file=sys.stderr)
                time.sleep(15)
    except mf.ManifestError as exc:
        print(f"publish failed: {exc}", file=sys.stderr)
        return 1
    except HttpResponseError as exc:
        print(f"publish failed: {exc.status_code} {exc.reason}: needs Storage Blob Data "
              f"Contributor on {args.container}", file=sys.stderr)
        return 1
    print(f"modelUri: {args.account_url.rstrip('/')}/{args.container}/{prefix}")
    print(f"sha256:   {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
