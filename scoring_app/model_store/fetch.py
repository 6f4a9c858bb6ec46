"""The init container's command: pull a published model into the pod, verified.

    python3 -m scoring_app.model_store.fetch

Reads the contract's ``FETCH_VARIABLES`` (docs/contract.md, "Models as data"):
  Var.MODEL_URI     https://<account>.blob.core.windows.net/<container>/<prefix>
  Var.MODEL_DIGEST  the manifest's sha256, written into the Deployment by the stack
  Var.MODEL_DIR     where the verified model appears (inside the emptyDir)
  Var.MODEL_STORAGE_SUFFIX  the storage endpoint the URI must name (default
      blob.core.windows.net: <account>.blob.core.windows.net); another cloud's suffix (e.g.
      blob.core.usgovcloudapi.net), or an emulator's exact 127.0.0.1:<port> (path style).
      The storage token goes to no other host.
  Var.FETCH_CONCURRENCY  files in flight, and chunks in flight per file (default 8, at
      most MAX_CONCURRENCY)
  Var.FETCH_RETRIES      retries per request on what Azure's SDK calls transient (default 6)
  Var.MODEL_PUBLIC_KEY   optional: a PEM public key (OpenSSF model signing, key method)
  Var.MODEL_CERTIFICATE_CHAIN  optional: PEM files, ':'-separated (certificate method)
      Either one makes a valid `model.sig` (the model-signing library's signature, in the
      prefix and its manifest) a condition: a missing or bad signature stops the pod.
  Var.MODEL_SCAN   optional, default false: true runs modelscan over the verified model
      (scoring_app/model_store/scan.py); a finding exits 2, a scan that cannot finish exits 1.
  AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE: set by AKS's workload
  identity webhook; azure-identity's WorkloadIdentityCredential reads them.

Nothing partial is ever loaded: every file is downloaded into a staging directory beside
Var.MODEL_DIR and checked against the manifest (whose sha256 is Var.MODEL_DIGEST),
then the signature and the scan run, and only then is it renamed into place (one
rename(2)). Any failure prints one line naming the file or the permission and exits 1
(2: the scan flagged the model), which stops the pod. docs/models-as-data.md has the
order of the checks.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scoring_app import settings
from scoring_app.contract import Var
from scoring_app.model_store import manifest as mf
from scoring_app.model_store import scan as model_scan
from scoring_app.model_store.stats import STATS_NAME

LOG = logging.getLogger("scoring.model_fetch")
READER_ROLE = "Storage Blob Data Reader"
READ_ACTION = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
#: The OpenSSF model-signing signature, at the model's root (docs/models-as-data.md).
SIGNATURE_NAME = "model.sig"
#: The token the downloads need: Azure Storage's data plane (what the SDK's bearer policy asks).
STORAGE_SCOPE = "https://storage.azure.com/.default"
#: Retries of one token request, in azure-identity's own pipeline (azure-core's RetryPolicy:
#: 408, 429, 500, 502, 503, 504 and connection errors, backing off from 0.8 s; Entra's 400
#: for a wrong identity is not retried). Its defaults already stop each kind at 3 (status,
#: connect, read); retry_total caps them together. Past that the init container fails, and
#: the kubelet's restart of it is the outer retry.
TOKEN_RETRIES = 3
_CHUNK = 8 << 20
#: The Azure public cloud's blob endpoint suffix: the only host the token goes to by default.
PUBLIC_SUFFIX = "blob.core.windows.net"
#: Var.FETCH_CONCURRENCY's ceiling: files in flight, and chunks in flight for each.
MAX_CONCURRENCY = 32
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,255}")
_SUFFIX = re.compile(r"(?:[a-z0-9-]+\.)+[a-z0-9-]+")


class FetchError(RuntimeError):
    """One line that says what failed: the file, or the permission."""


@dataclass(frozen=True)
class Location:
    account_url: str  # https://<account>.blob.core.windows.net, or emulator's .../<account>
    container: str
    prefix: str

    def describe(self, blob: str = "") -> str:
        return f"{self.account_url}/{self.container}/{blob or self.prefix}"


def _emulator(suffix: str) -> bool:
    """An exact ``127.0.0.1:<port>`` (or ``localhost``, or another IP) names an emulator,
    which takes the account as the URI's first path segment."""
    host = suffix.rsplit(":", 1)[0] if suffix.count(":") == 1 else suffix
    try:
        return host == "localhost" or bool(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return False


def check_suffix(suffix: str) -> str:
    """Var.MODEL_STORAGE_SUFFIX: a DNS suffix such as blob.core.windows.net, or an
    emulator's host:port."""
    if _emulator(suffix) or _SUFFIX.fullmatch(suffix):
        return suffix
    raise FetchError(f"{Var.MODEL_STORAGE_SUFFIX} {mf.quote(suffix)} must be a blob endpoint "
                     "suffix such as blob.core.windows.net, or an emulator's 127.0.0.1:<port>")


def parse_uri(uri: str, suffix: str = PUBLIC_SUFFIX) -> Location:
    """``https://<account>.<suffix>/<container>/<prefix>``; with an emulator's suffix
    (``127.0.0.1:10000``), ``https://127.0.0.1:10000/<account>/<container>/<prefix>``. The
    storage token goes to this host: nothing else is accepted. A URI with a user part or a
    query may hold a secret, so it is never repeated."""
    uri = uri or ""
    if mf.has_control(uri) or any(c.isspace() for c in uri):
        raise FetchError(f"{Var.MODEL_URI} {mf.quote(uri)} holds a control character or a space")
    parts = urlsplit(uri)
    if "?" in uri or "#" in uri:
        raise FetchError(f"{Var.MODEL_URI} must not carry a query or a fragment (no SAS tokens: "
                         "the pod uses its identity)")
    if "@" in parts.netloc:
        raise FetchError(f"{Var.MODEL_URI} must not carry a user part (user@ or user:password@): "
                         "the pod uses its identity")
    if parts.scheme != "https" or not parts.netloc:
        raise FetchError(f"{Var.MODEL_URI} must be an https:// blob URL, got {mf.quote(uri)}")
    segments = parts.path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash
    bad = [s for s in segments if s in (".", "..") or not _SEGMENT.fullmatch(s)]
    if bad:
        raise FetchError(f"{Var.MODEL_URI} {mf.quote(uri)}: path segment {mf.quote(bad[0])} is "
                         "not a plain name (letters, digits, '.', '_', '-'; no '.' or '..')")
    if _emulator(suffix):
        if parts.netloc != suffix:
            raise FetchError(f"{Var.MODEL_URI} {mf.quote(uri)} is not on the storage endpoint "
                             f"{mf.quote(suffix)} ({Var.MODEL_STORAGE_SUFFIX})")
        if len(segments) < 3 or not _ACCOUNT.fullmatch(segments[0]):
            raise FetchError(f"{Var.MODEL_URI} {mf.quote(uri)}: expected /<account>/<container>/<prefix>")
        base, segments = f"https://{parts.netloc}/{segments[0]}", segments[1:]
    else:
        account, dot, rest = parts.netloc.partition(".")
        if rest != suffix or not _ACCOUNT.fullmatch(account):
            raise FetchError(f"{Var.MODEL_URI} {mf.quote(uri)} is not on a storage endpoint "
                             f"https://<account>.{suffix} (another cloud: set {Var.MODEL_STORAGE_SUFFIX})")
        base = f"https://{parts.netloc}"
    if len(segments) < 2 or not _CONTAINER.fullmatch(segments[0]):
        raise FetchError(f"{Var.MODEL_URI} {mf.quote(uri)}: expected /<container>/<prefix>, "
                         "a container name of 3-63 lowercase letters, digits and '-'")
    return Location(base, segments[0], "/".join(segments[1:]))


def check_destination(dest: str | os.PathLike) -> Path:
    """Var.MODEL_DIR, checked before anything is removed or asked for: absolute, no '.'
    or '..' parts, no symbolic link on the way (it stays where it names, in the volume)."""
    raw = os.fspath(dest)
    path = Path(raw)
    if (not path.is_absolute() or os.path.normpath(raw) != raw or "//" in raw
            or path.name in ("", ".", "..")):
        raise FetchError(f"{Var.MODEL_DIR} {mf.quote(raw)} must be an absolute path with no "
                         "'.', '..' or empty parts")
    if mf.has_control(raw) or path.resolve() != path:
        raise FetchError(f"{Var.MODEL_DIR} {mf.quote(raw)} passes through a symbolic link or "
                         "holds a control character: it must name a place in the model volume")
    return path


class _Progress:
    """Bytes so far across all files; a log line at most every `every_s` seconds."""

    def __init__(self, total: int, every_s: float = 2.0):
        self.total, self.every_s = total, every_s
        self.done: dict[str, int] = {}
        self.started = self.last = time.monotonic()
        self.lock = threading.Lock()

    def hook(self, path: str):
        def update(current: int, _total: int | None) -> None:
            with self.lock:
                self.done[path] = current
                now = time.monotonic()
                if now - self.last >= self.every_s:
                    self.last = now
                    self.log(now)
        return update

    def log(self, now: float | None = None) -> None:
        got = sum(self.done.values())
        seconds = max((now or time.monotonic()) - self.started, 1e-6)
        LOG.info("model fetch: %.1f of %.1f MB (%.0f%%), %.1f MB/s", got / 1e6, self.total / 1e6,
                 100 * got / max(self.total, 1), got / 1e6 / seconds)


def _explain(exc: Exception, loc: Location, blob: str) -> FetchError:
    """One line for an SDK error: a 403 names the role and action the identity lacks."""
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ResourceNotFoundError, ServiceRequestError,
                                       ServiceResponseError)
    where = loc.describe(blob)
    if isinstance(exc, ResourceNotFoundError):
        return FetchError(f"missing in blob storage: {where}")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, HttpResponseError) and status in (401, 403):
        code = _code(exc) or status
        return FetchError(
            f"{status} {code} reading {where}: the pod's identity needs '{READER_ROLE}' "
            f"({READ_ACTION}) on container {loc.container}, and a token the account accepts")
    if isinstance(exc, ClientAuthenticationError):  # no token at all (identity not set up)
        return FetchError(f"no token for {loc.account_url}: {_first_line(exc)} "
                          "(is the pod labelled azure.workload.identity/use and its "
                          "ServiceAccount annotated with the identity's client id?)")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return FetchError(f"cannot download {where} after retries: {_first_line(exc)}")
    if isinstance(exc, HttpResponseError):
        return FetchError(f"{status} {_code(exc)} reading {where}: {_first_line(exc)}")
    return FetchError(f"reading {where}: {type(exc).__name__}: {_first_line(exc)}")


def _code(exc: Exception) -> str:
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))  # the SDK gives a StorageErrorCode enum


def _first_line(exc: Exception) -> str:
    """An error's first line, its control characters escaped: text from the other side (a
    server's error message, a name) cannot add or forge a log line."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return mf.quote(line, 500)[1:-1] if mf.has_control(line) else line


def first_token(credential, loc: Location) -> None:
    """Ask for the storage token once, before any download. The storage SDK's retry policy
    wraps its bearer-token call (it retries every AzureError), so a wrong identity would
    wait out every blob retry, about 2 min with 6, for an answer Entra gives at once. The
    token is then in the credential's cache (and the SDK's policy) for the downloads."""
    from azure.core.exceptions import AzureError, ClientAuthenticationError
    try:
        credential.get_token(STORAGE_SCOPE)
    except ClientAuthenticationError as exc:
        raise _explain(exc, loc, "") from None
    except AzureError as exc:  # the token endpoint did not answer, after its retries
        raise FetchError(f"no token for {loc.account_url}: the token endpoint did not answer: "
                         f"{_first_line(exc)}") from None


def container_client(loc: Location, credential, *, retries: int = 6, connection_verify=None,
                     initial_backoff: float = 1, increment_base: float = 2):
    """A ContainerClient with a bearer-token credential only (no key, no SAS) and the SDK's
    own exponential retry for what it deems transient."""
    from azure.storage.blob import ContainerClient, ExponentialRetry
    extra = {} if connection_verify is None else {"connection_verify": connection_verify}
    return ContainerClient(
        loc.account_url, loc.container, credential=credential,
        # the SDK annotates these int; its backoff arithmetic takes any number
        retry_policy=ExponentialRetry(initial_backoff=initial_backoff,  # type: ignore[arg-type]
                                      increment_base=increment_base,  # type: ignore[arg-type]
                                      retry_total=retries, random_jitter_range=1),
        max_chunk_get_size=_CHUNK, max_single_get_size=_CHUNK, **extra)


@dataclass(frozen=True)
class Signer:
    """Whose signature the model must carry: a public key, or a certificate chain."""
    public_key: str | None = None
    certificate_chain: tuple[str, ...] = ()

    def __post_init__(self):
        if bool(self.public_key) == bool(self.certificate_chain):
            raise FetchError(f"name exactly one of {Var.MODEL_PUBLIC_KEY} and "
                             f"{Var.MODEL_CERTIFICATE_CHAIN}")
        for path in (self.public_key, *self.certificate_chain):
            if path and not Path(path).is_file():
                raise FetchError(f"model signature: {path} is not a readable file")

    def verify(self, model_dir: Path) -> None:
        """Fail closed: no signature, a signature by another key, or a file that differs from
        what was signed, each stops here with one line."""
        signature = model_dir / SIGNATURE_NAME
        if not signature.is_file():
            raise FetchError(f"the model is unsigned ({SIGNATURE_NAME} is not in its manifest), "
                             "but the deployment names a signer")
        from model_signing import hashing, verifying  # only when a signer is named
        config = verifying.Config()
        if self.public_key:
            config = config.use_elliptic_key_verifier(public_key=self.public_key)
        else:
            config = config.use_certificate_verifier(certificate_chain=self.certificate_chain)
        config = config.set_hashing_config(
            hashing.Config().set_ignored_paths(paths=[signature]))
        try:
            config.verify(model_dir, signature)
        except Exception as exc:  # the library raises ValueError and others
            raise FetchError(f"{SIGNATURE_NAME}: signature check failed: {_first_line(exc)[:300]}") from None


def fetch(uri: str, expected_digest: str, dest: str | os.PathLike, credential, *,
          concurrency: int = 8, retries: int = 6, connection_verify=None,
          initial_backoff: float = 1, increment_base: float = 2, progress_every_s: float = 2.0,
          on_progress=None, signer: Signer | None = None, scan: bool = False,
          storage_suffix: str = PUBLIC_SUFFIX) -> dict:
    """Download and verify; returns ``{"bytes", "seconds", "files", "digest"}`` (and
    ``"scan_seconds"`` with ``scan``). Raises FetchError, ManifestError or
    model_scan.ScanError with one line; then ``dest`` does not exist."""
    mf.check_digest(expected_digest, Var.MODEL_DIGEST)
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise FetchError(f"{Var.FETCH_CONCURRENCY} must be 1 to {MAX_CONCURRENCY}, got {concurrency}")
    loc = parse_uri(uri, check_suffix(storage_suffix))
    dest = check_destination(dest)
    staging = dest.with_name(f".{dest.name}.partial")
    started = time.monotonic()
    _clear_own(dest, staging)
    first_token(credential, loc)
    client = container_client(loc, credential, retries=retries, connection_verify=connection_verify,
                              initial_backoff=initial_backoff, increment_base=increment_base)
    try:
        entries = _manifest(client, loc, expected_digest)
        total = sum(e.size for e in entries)
        LOG.info("model fetch: %s, %d files, %.1f MB, digest %s", loc.describe(), len(entries),
                 total / 1e6, expected_digest)
        progress = _Progress(total, progress_every_s)
        _mkdir(staging)
        got = _download_all(client, loc, entries, staging, concurrency, progress, on_progress)
        progress.log()
        if signer is not None:
            signer.verify(staging)
            LOG.info("model fetch: %s verified against the named signer", SIGNATURE_NAME)
        scanned = model_scan.scan(staging) if scan else None
        seconds = time.monotonic() - started
        stats = {"bytes": got, "seconds": round(seconds, 3), "files": len(entries),
                 "digest": expected_digest, "dir": dest.name}
        if scanned:
            stats["scan_seconds"] = scanned["seconds"]
        (staging.parent / STATS_NAME).write_text(json.dumps(stats))
        os.rename(staging, dest)
        LOG.info("model fetch: verified %d files, %.1f MB in %.1f s (%.1f MB/s) -> %s",
                 len(entries), got / 1e6, seconds, got / 1e6 / max(seconds, 1e-6), dest)
        return stats
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        client.close()


def _clear_own(dest: Path, staging: Path) -> None:
    """An init container run again (same emptyDir) starts from nothing, but removes only what a
    fetch placed: its staging directory, and a model directory its stats file names."""
    if staging.is_symlink() or staging.exists() and not staging.is_dir():
        raise FetchError(f"{mf.quote(str(staging))} exists and is not the fetch's staging directory")
    if staging.exists():
        shutil.rmtree(staging)
    if not (dest.exists() or dest.is_symlink()):
        return
    try:
        placed = json.loads((dest.parent / STATS_NAME).read_text()).get("dir") == dest.name
    except (OSError, ValueError, AttributeError):
        placed = False
    if not placed or dest.is_symlink() or not dest.is_dir():
        raise FetchError(f"{Var.MODEL_DIR} {mf.quote(str(dest))} already exists and was not "
                         "placed by a model fetch: it is not removed; name an empty place in the volume")
    shutil.rmtree(dest)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create {mf.quote(str(path))}: {exc.strerror}") from None


def _manifest(client, loc: Location, expected_digest: str) -> tuple[mf.Entry, ...]:
    """The manifest, read with a bound: no more than MAX_MANIFEST_BYTES (+1, to see one
    over) is ever asked for, so a planted manifest of any size costs that much memory."""
    blob = f"{loc.prefix.rstrip('/')}/{mf.MANIFEST_NAME}"
    try:
        downloader = client.download_blob(blob, offset=0, length=mf.MAX_MANIFEST_BYTES + 1)
        if downloader.size > mf.MAX_MANIFEST_BYTES:  # the range's size: one byte over is enough
            raise FetchError(f"{mf.MANIFEST_NAME} in blob storage is over the bound of "
                             f"{mf.MAX_MANIFEST_BYTES} bytes on a manifest ({loc.describe(blob)})")
        raw = downloader.readall()
    except FetchError:
        raise
    except Exception as exc:  # every SDK error becomes one line
        raise _explain(exc, loc, blob) from None
    return mf.decode(raw, expected_digest)


def _download_all(client, loc: Location, entries, staging: Path, concurrency: int,
                  progress: _Progress, on_progress) -> int:
    """Every entry, ``concurrency`` files at a time (each with up to ``concurrency`` chunks in
    flight); only as many downloads are submitted as can run, so a long manifest costs no
    more memory than a short one."""
    got = 0
    workers = min(concurrency, len(entries))
    todo = iter(entries)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running = set()
        try:
            while True:
                for entry in todo:
                    running.add(pool.submit(_download, client, loc, entry, staging, concurrency,
                                            progress, on_progress))
                    if len(running) >= workers:
                        break
                if not running:
                    return got
                done, running = wait(running, return_when=FIRST_COMPLETED)
                got += sum(future.result() for future in done)
        except BaseException:
            for future in running:
                future.cancel()
            raise


def _also(hook: Callable[[int, int | None], None], path: str,
          on_progress: Callable[[str, int, int | None], None]) -> Callable[[int, int | None], None]:
    """``hook``, then the caller's ``on_progress`` for ``path``."""
    def both(current: int, total: int | None) -> None:
        hook(current, total)
        on_progress(path, current, total)
    return both


class _Bounded:
    """The file a shard is written to, refusing any byte past the manifest's size for it
    (what the SDK's parallel readinto needs: write, seek, tell, seekable)."""

    def __init__(self, handle, limit: int, path: str):
        self.handle, self.limit, self.path = handle, limit, path

    def write(self, data) -> int:
        if self.handle.tell() + len(data) > self.limit:
            raise FetchError(f"{mf.quote(self.path)}: more than the manifest's {self.limit} bytes "
                             "arrived; refused past that bound")
        return self.handle.write(data)

    def seek(self, *args):
        return self.handle.seek(*args)

    def tell(self) -> int:
        return self.handle.tell()

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        self.handle.flush()


def _download(client, loc: Location, entry: mf.Entry, staging: Path, concurrency: int,
              progress: _Progress, on_progress) -> int:
    target = staging / entry.path
    _mkdir(target.parent)
    blob = f"{loc.prefix.rstrip('/')}/{entry.path}"
    hook = progress.hook(entry.path)
    if on_progress is not None:
        hook = _also(hook, entry.path, on_progress)
    name = mf.quote(entry.path)
    try:
        downloader = client.download_blob(blob, max_concurrency=concurrency, progress_hook=hook)
        if downloader.size != entry.size:
            raise FetchError(f"{name}: size {downloader.size} in blob storage, "
                             f"{entry.size} in the manifest ({loc.describe(blob)})")
        with open(target, "wb") as handle:
            downloader.readinto(_Bounded(handle, entry.size, entry.path))
    except (FetchError, mf.ManifestError):
        raise
    except OSError as exc:  # the volume: no space, a name it cannot hold
        raise FetchError(f"{name}: cannot write {mf.quote(str(target))}: {exc.strerror}") from None
    except Exception as exc:  # the SDK's errors, each worded as one line
        raise _explain(exc, loc, blob) from None
    size = target.stat().st_size
    if size != entry.size:
        raise FetchError(f"{name}: {size} bytes downloaded, manifest says {entry.size}")
    actual = mf.file_sha256(target)
    if actual != entry.sha256:
        raise FetchError(f"{name}: sha256 {actual} does not match the manifest's "
                         f"{entry.sha256} ({loc.describe(blob)})")
    return size


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise FetchError(f"{name} must be an integer, got {raw!r}") from None


def _bool_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip() or "false"
    try:
        return settings.parse_bool(raw)
    except ValueError as exc:
        raise FetchError(f"{name} {exc}, got {raw!r}") from None


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise FetchError(f"{name} is not set (the stack sets it on the init container)")
    return value


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("modelscan").setLevel(logging.CRITICAL)  # its findings: our one line
    # its "get_token failed" warning says what our one failure line says (first_token)
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    try:
        uri, digest = _required(Var.MODEL_URI), _required(Var.MODEL_DIGEST)
        dest = _required(Var.MODEL_DIR)
        concurrency = _int_env(Var.FETCH_CONCURRENCY, 8)
        retries = _int_env(Var.FETCH_RETRIES, 6)
        scan = _bool_env(Var.MODEL_SCAN)
        suffix = check_suffix(os.environ.get(Var.MODEL_STORAGE_SUFFIX, "").strip()
                              or PUBLIC_SUFFIX)
        parse_uri(uri, suffix)  # bad input is named before any identity is asked for
        mf.check_digest(digest, Var.MODEL_DIGEST)
        check_destination(dest)
        key = os.environ.get(Var.MODEL_PUBLIC_KEY, "").strip()
        chain = tuple(p for p in os.environ.get(Var.MODEL_CERTIFICATE_CHAIN, "").split(":") if p)
        signer = Signer(key or None, chain) if (key or chain) else None
        from azure.identity import WorkloadIdentityCredential
        try:
            credential = WorkloadIdentityCredential(retry_total=TOKEN_RETRIES)
        except ValueError as exc:  # the webhook's variables are missing
            raise FetchError(f"workload identity is not configured: {exc}") from None
        fetch(uri, digest, dest, credential, concurrency=concurrency, retries=retries, signer=signer,
              scan=scan, storage_suffix=suffix)
    except (FetchError, mf.ManifestError, model_scan.ScanError) as exc:
        print(f"model fetch failed: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except OSError as exc:  # the volume or the network, outside what is named above
        print(f"model fetch failed: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
