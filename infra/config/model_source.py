"""Where each deployment's model comes from: one union, ``ModelSource``.

- ``Baked``: modelStore image; the model is inside the image, built from ``model_dir``
  or a prebuilt image that holds it.
- ``Published``: modelStore blob; the stack publishes ``model_dir`` to its own
  storage and the pods fetch it; the image (built, or prebuilt) runs the app only.
- ``External``: modelUri; someone else published the model, the pods fetch it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from infra.config.checks import pinned_by_digest, quantity
from infra.config.errors import ConfigError

#: The repository root: relative paths in config (modelDir) are resolved from here.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: A deployment's own modelUri and the keys that belong to that one URI.
MODEL_URI_KEYS = ("modelUri", "modelDigest", "modelUriScope", "modelSizeLimit")

# The fetch's own rule (scoring_app/model_store/fetch.py, parse_uri) for the public cloud: the
# blob endpoint, then path segments of plain names, none of them '.' or '..' (an HTTP client
# would resolve them into another container than the one granted), no user part, query or
# fragment. fullmatch: '$' would also accept a trailing newline.
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._-]{1,255}"
_MODEL_URI = re.compile(r"https://([a-z0-9]{3,24})\.blob\.core\.windows\.net/"
                        r"([a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9]))/"
                        rf"((?:{_SEGMENT}/)*{_SEGMENT})/?")
_CONTAINER_ID = re.compile(r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/"
                           r"Microsoft\.Storage/storageAccounts/([a-z0-9]{3,24})/blobServices/default/"
                           r"containers/([a-z0-9-]{3,63})$")


@dataclass(frozen=True)
class ExternalModel:
    """modelUri: a model someone published under a prefix of their own storage account."""
    uri: str  # https://<account>.blob.core.windows.net/<container>/<prefix> (its own manifest)
    sha256: str  # that manifest's sha256: what the pods must get
    scope: str  # ARM id of its container: where the stack grants read, and nowhere wider
    size_limit: str  # the emptyDir it is fetched into (its size is not known here)

    @property
    def container(self) -> tuple[str, str]:
        """(account, container): storage account names are global, so this names one container."""
        return tuple(_MODEL_URI.fullmatch(self.uri).groups()[:2])


@dataclass(frozen=True)
class Baked:
    """The model is in the image: built from ``model_dir``, or ``prebuilt_image`` (one of them)."""
    model_dir: Path | None = None
    prebuilt_image: str | None = None


@dataclass(frozen=True)
class Published:
    """The stack publishes ``model_dir``; the image runs the app only (built, or prebuilt)."""
    model_dir: Path
    prebuilt_image: str | None = None


@dataclass(frozen=True)
class External:
    """Someone else published ``model``; the image runs the app only (built, or prebuilt)."""
    model: ExternalModel
    prebuilt_image: str | None = None


ModelSource = Union[Baked, Published, External]


def model_dir_source(prefix: str, prebuilt: str | None, raw_dir, model_store: str,
                     ) -> Baked | Published:
    """A model the stack has as a directory (checked: it holds a SavedModel), or a prebuilt
    image pinned by digest that holds it (modelStore image: then no directory is needed)."""
    if prebuilt:
        pinned_by_digest(f"{prefix}prebuiltImage", prebuilt)
        if model_store == "image":
            return Baked(prebuilt_image=prebuilt)
    model_dir = (REPO_ROOT / str(raw_dir or "")).resolve()
    if not (model_dir / "saved_model.pb").is_file():
        raise ConfigError(f"{prefix}modelDir", f"{str(model_dir)!r} holds no saved_model.pb; "
                          "point it at a TensorFlow SavedModel directory, or set prebuiltImage")
    if model_store == "image":
        return Baked(model_dir=model_dir)
    return Published(model_dir=model_dir, prebuilt_image=prebuilt or None)


def deployment_source(key: str, entry: dict, stack: ModelSource | None,
                      prebuilt: str | None, model_store: str, size_limit: str) -> ModelSource:
    """A deployment's model: its own modelUri or modelDir (or its own prebuiltImage), else
    the stack's. ``stack`` is the stack keys' source (None: the deployments name theirs),
    ``prebuilt`` the stack's prebuiltImage."""
    if "modelDir" in entry and "modelUri" in entry:
        raise ConfigError(f"{key}.modelUri", "cannot be set with modelDir in the same "
                          "deployment: name the model the stack publishes (modelDir) or one "
                          "published elsewhere (modelUri), not both")
    loose = [k for k in MODEL_URI_KEYS[1:] if k in entry and "modelUri" not in entry]
    if loose:
        raise ConfigError(f"{key}.{loose[0]}", f"goes with {key}.modelUri (a digest and a "
                          "scope belong to one model): set modelUri in this deployment too, "
                          "or remove it")
    if "modelUri" in entry or ("modelDir" not in entry and isinstance(stack, External)):
        model = (external_model(f"{key}.", {k: entry.get(k) for k in MODEL_URI_KEYS},
                                model_store, size_limit)
                 if "modelUri" in entry else stack.model)
        image = entry.get("prebuiltImage") or prebuilt
        return External(model, pinned_by_digest(f"{key}.prebuiltImage", image) if image else None)
    if "modelDir" in entry or "prebuiltImage" in entry:
        # A deployment's own prebuiltImage replaces the stack's; with modelStore image the
        # stack's (which holds the stack's model) does not carry over to its own modelDir.
        inherited = prebuilt if model_store == "blob" and "prebuiltImage" not in entry else None
        return model_dir_source(f"{key}.", entry.get("prebuiltImage") or inherited,
                                entry.get("modelDir") or _model_dir(stack), model_store)
    if stack is None:
        return model_dir_source(f"{key}.", prebuilt, None, model_store)
    return stack


def _model_dir(source: ModelSource | None) -> Path | None:
    return getattr(source, "model_dir", None)


def stack_source(model_dir: str, prebuilt: str | None, model_store: str, external: ExternalModel | None,
                 has_deployments: bool) -> ModelSource | None:
    """The stack keys' model: modelUri, else modelDir (or a prebuilt image holding it). With
    `deployments`, each names its own and the stack's is only their default: an empty
    modelDir is then no model rather than a missing one."""
    if external:
        return External(external, prebuilt)
    if has_deployments and not (model_dir or (prebuilt and model_store == "image")):
        return None
    return model_dir_source("", prebuilt, model_dir, model_store)


def external_model(prefix: str, raw: dict, model_store: str, default_size: str) -> ExternalModel:
    """modelUri and the keys that go with it, at `prefix` ("" for the stack's, or
    "deployments.<name>."): what to fetch, the digest it must have, and where read is granted."""
    def text(name: str) -> str:
        value = raw.get(name)
        return "" if value is None else str(value)
    uri = text("modelUri")
    if model_store != "blob":
        raise ConfigError(f"{prefix}modelUri", "needs modelStore blob (the pods fetch it; with "
                          "modelStore image every model is baked into an image from its modelDir)")
    match = _MODEL_URI.fullmatch(uri)
    if not match:  # a query may be a SAS token, a user part a password: never repeat them
        shown = uri.split("?", 1)[0] + ("?<query not shown>" if "?" in uri else "")
        if "@" in shown:
            shown = "https://<user part not shown>@" + shown.rsplit("@", 1)[1]
        raise ConfigError(f"{prefix}modelUri", f"{shown!r} must be https://<account>.blob.core."
                          "windows.net/<container>/<prefix>: path segments of letters, digits, "
                          "'.', '_' and '-', none of them '.' or '..'; no user part, no fragment, "
                          "no query (no SAS: the pods use their identity)")
    digest = text("modelDigest")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"{prefix}modelDigest", f"with {prefix}modelUri, the sha256 of its "
                          "manifest.json (64 lowercase hex; scoring_tools.publish_model prints it)")
    scope = text("modelUriScope")
    scope_match = _CONTAINER_ID.match(scope)
    if not scope_match or scope_match.groups() != match.groups()[:2]:
        raise ConfigError(f"{prefix}modelUriScope", f"with {prefix}modelUri, the resource id of "
                          f"its container (/subscriptions/<id>/resourceGroups/<group>/providers/"
                          f"Microsoft.Storage/storageAccounts/{match.group(1)}/blobServices/default/"
                          f"containers/{match.group(2)}): the stack grants read there and nowhere "
                          "wider")
    size = quantity(f"{prefix}modelSizeLimit", text("modelSizeLimit") or default_size, ", e.g. 4Gi")
    return ExternalModel(uri=uri, sha256=digest, scope=scope, size_limit=size)


def signer(prefix: str, key, chain, model_store: str) -> dict:
    """modelPublicKey or modelCertificateChain at `prefix` (the stack's, or a deployment's),
    checked: PEM text, at most one, modelStore blob. Empty means no signature check."""
    found = {}
    for name, value, kind in (("modelPublicKey", key, "PUBLIC KEY"),
                              ("modelCertificateChain", chain, "CERTIFICATE")):
        pem = str(value or "").strip() or None
        if pem and model_store != "blob":
            raise ConfigError(f"{prefix}{name}", "needs modelStore blob (the fetch checks the "
                              "signature)")
        if pem and not (pem.startswith(f"-----BEGIN {kind}-----")
                        and pem.endswith(f"-----END {kind}-----")):
            raise ConfigError(f"{prefix}{name}", f"must be PEM (-----BEGIN {kind}-----"
                              f"{', one or more' if kind == 'CERTIFICATE' else ''})")
        found[name] = pem
    if found["modelPublicKey"] and found["modelCertificateChain"]:
        raise ConfigError(f"{prefix}modelCertificateChain", f"cannot be set with {prefix}"
                          "modelPublicKey: a model's signature is checked with a key or with a "
                          "certificate chain, not both")
    return {"model_public_key": found["modelPublicKey"],
            "model_certificate_chain": found["modelCertificateChain"]}
