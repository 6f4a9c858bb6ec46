"""Capture blobs into Blob Storage with a bearer-token credential (no key, no SAS).

The pod's credential is the one the model fetch uses (``WorkloadIdentityCredential``,
from the variables AKS's webhook sets); retries are few and time-bounded, because a
block that cannot be written is dropped and counted rather than held: the buffer, not
the retry policy, absorbs a slow Blob Storage.
"""

from __future__ import annotations

import logging

from ..contract import Var
from ..model_store.fetch import TOKEN_RETRIES, Location
from ..settings import SettingsError

log = logging.getLogger(__name__)

#: Retries of one upload (azure-storage-blob's ExponentialRetry: 408, 5xx, connection errors).
RETRIES = 2
CONNECTION_TIMEOUT_S = 5
READ_TIMEOUT_S = 30
CONTENT_TYPE = "application/jsonl"


def location(url: str) -> Location:
    """``https://<host>/<container>``, or the emulator's ``https://<ip>:<port>/<account>/<container>``
    (already checked by settings)."""
    head, container = url.rstrip("/").rsplit("/", 1)
    return Location(head, container, "")


class BlobUploader:
    """``put(name, data)``: one blob, or an exception after the retries."""

    def __init__(self, url: str, credential, connection_verify=None):
        from azure.storage.blob import ContainerClient, ExponentialRetry
        self.location = location(url)
        extra = {} if connection_verify is None else {"connection_verify": connection_verify}
        self.client = ContainerClient(
            self.location.account_url, self.location.container, credential=credential,
            # the SDK annotates the backoffs int; its arithmetic takes any number
            retry_policy=ExponentialRetry(initial_backoff=0.5,  # type: ignore[arg-type]
                                          increment_base=2, retry_total=RETRIES,
                                          random_jitter_range=0.5),  # type: ignore[arg-type]
            connection_timeout=CONNECTION_TIMEOUT_S, read_timeout=READ_TIMEOUT_S, **extra)

    def put(self, name: str, data: bytes) -> None:
        from azure.storage.blob import ContentSettings
        self.client.upload_blob(name, data, overwrite=False,
                                content_settings=ContentSettings(content_type=CONTENT_TYPE))

    def close(self) -> None:
        self.client.close()


def workload_uploader(url: str) -> BlobUploader:
    """The pod's uploader; a pod without workload identity stops at start, naming why."""
    from azure.identity import WorkloadIdentityCredential
    try:
        credential = WorkloadIdentityCredential(retry_total=TOKEN_RETRIES)
    except ValueError as exc:  # the webhook's variables are missing
        raise SettingsError(f"{Var.CAPTURE_URI} is set but workload identity is not "
                            f"configured: {exc}") from None
    return BlobUploader(url, credential)
