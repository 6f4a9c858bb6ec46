"""The seam between the stack (infra/) and the container (scoring_app/), in one module.

docs/contract.md says it in words; this module says it to both sides' code: the
variable names, the ports, the key files, the probe paths, the deployment header
and label, the deployment-name rule and the model's paths. The Pulumi program
writes what the container reads, and both import the names from here, so neither
can drift from the other. Standard library only: the Pulumi program imports it
without TensorFlow, Flask or gevent.

``scoring_app/settings.py`` parses the service's variables (``Var``'s first
group); ``scoring_app/model_store/fetch.py`` reads the init container's (the
second). A test checks that the settings declare exactly the first group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

PREFIX: Final = "SCORING_"


class Var:
    """Every environment variable either side names. Plain strings, so a Deployment's
    ``env`` and ``os.environ`` take them as they are."""

    # The service (scoring_app/settings.py declares how each is parsed and documented).
    MODEL_DIR: Final = "SCORING_MODEL_DIR"
    MODEL_NAME: Final = "SCORING_MODEL_NAME"
    MODEL_VERSION: Final = "SCORING_MODEL_VERSION"
    DEPLOYMENT_NAME: Final = "SCORING_DEPLOYMENT_NAME"
    CAPTURE_URI: Final = "SCORING_CAPTURE_URI"
    CAPTURE_SAMPLE_RATE: Final = "SCORING_CAPTURE_SAMPLE_RATE"
    CAPTURE_IMAGES: Final = "SCORING_CAPTURE_IMAGES"
    CAPTURE_BUFFER_BYTES: Final = "SCORING_CAPTURE_BUFFER_BYTES"
    CAPTURE_BLOCK_BYTES: Final = "SCORING_CAPTURE_BLOCK_BYTES"
    CAPTURE_BLOCK_SECONDS: Final = "SCORING_CAPTURE_BLOCK_SECONDS"
    CAPTURE_FLUSH_SECONDS: Final = "SCORING_CAPTURE_FLUSH_SECONDS"
    LABELS_FILE: Final = "SCORING_LABELS_FILE"
    PREPROCESS: Final = "SCORING_PREPROCESS"
    OUTPUT: Final = "SCORING_OUTPUT"
    APPLY_SOFTMAX: Final = "SCORING_APPLY_SOFTMAX"
    PRECISION: Final = "SCORING_PRECISION"
    VALIDATION_DIR: Final = "SCORING_VALIDATION_DIR"
    GUARD_MIN_TOP1: Final = "SCORING_GUARD_MIN_TOP1"
    GUARD_MAX_DEVIATION: Final = "SCORING_GUARD_MAX_DEVIATION"
    GUARD_ACTION: Final = "SCORING_GUARD_ACTION"
    API_KEYS_DIR: Final = "SCORING_API_KEYS_DIR"
    AUTH: Final = "SCORING_AUTH"
    MAX_BATCH_SIZE: Final = "SCORING_MAX_BATCH_SIZE"
    BATCH_TIMEOUT_MS: Final = "SCORING_BATCH_TIMEOUT_MS"
    MODEL_CALLS: Final = "SCORING_MODEL_CALLS"
    MAX_QUEUE: Final = "SCORING_MAX_QUEUE"
    MAX_QUEUE_WAIT_MS: Final = "SCORING_MAX_QUEUE_WAIT_MS"
    REQUEST_TIMEOUT_MS: Final = "SCORING_REQUEST_TIMEOUT_MS"
    MAX_BODY_BYTES: Final = "SCORING_MAX_BODY_BYTES"
    MAX_IMAGE_PIXELS: Final = "SCORING_MAX_IMAGE_PIXELS"
    WORKERS: Final = "SCORING_WORKERS"
    THREADS: Final = "SCORING_THREADS"
    WORKER_CONNECTIONS: Final = "SCORING_WORKER_CONNECTIONS"
    HOST: Final = "SCORING_HOST"
    PORT: Final = "SCORING_PORT"
    METRICS_PORT: Final = "SCORING_METRICS_PORT"
    DRAIN_SECONDS: Final = "SCORING_DRAIN_SECONDS"
    GRACEFUL_TIMEOUT_S: Final = "SCORING_GRACEFUL_TIMEOUT_S"
    WORKER_TIMEOUT_S: Final = "SCORING_WORKER_TIMEOUT_S"
    LOG_LEVEL: Final = "SCORING_LOG_LEVEL"

    # The init container that fetches the model (scoring_app/model_store/fetch.py).
    MODEL_URI: Final = "SCORING_MODEL_URI"
    MODEL_DIGEST: Final = "SCORING_MODEL_DIGEST"
    MODEL_STORAGE_SUFFIX: Final = "SCORING_MODEL_STORAGE_SUFFIX"
    FETCH_CONCURRENCY: Final = "SCORING_FETCH_CONCURRENCY"
    FETCH_RETRIES: Final = "SCORING_FETCH_RETRIES"
    MODEL_PUBLIC_KEY: Final = "SCORING_MODEL_PUBLIC_KEY"
    MODEL_CERTIFICATE_CHAIN: Final = "SCORING_MODEL_CERTIFICATE_CHAIN"
    MODEL_SCAN: Final = "SCORING_MODEL_SCAN"


#: The model fetch's variables (the init container), ``MODEL_DIR`` aside: it is both sides'.
FETCH_ONLY: Final = (Var.MODEL_URI, Var.MODEL_DIGEST, Var.MODEL_STORAGE_SUFFIX, Var.FETCH_CONCURRENCY,
                     Var.FETCH_RETRIES, Var.MODEL_PUBLIC_KEY, Var.MODEL_CERTIFICATE_CHAIN,
                     Var.MODEL_SCAN)
FETCH_VARIABLES: Final = (Var.MODEL_DIR, *FETCH_ONLY)
#: The service's variables, in docs/service.md's order (settings.py declares each).
SERVICE_VARIABLES: Final = tuple(value for name, value in vars(Var).items()
                                 if name.isupper() and value not in FETCH_ONLY)
#: What the stack writes for every deployment; ``scoringEnv`` may not set these.
STACK_VARIABLES: Final = (
    Var.MODEL_DIR, Var.MODEL_NAME, Var.MODEL_VERSION, Var.API_KEYS_DIR, Var.PORT, Var.METRICS_PORT,
    Var.GRACEFUL_TIMEOUT_S, Var.DRAIN_SECONDS, Var.PRECISION, Var.DEPLOYMENT_NAME, Var.PREPROCESS,
    Var.CAPTURE_URI, Var.CAPTURE_SAMPLE_RATE, Var.CAPTURE_IMAGES)

# Ports: the public one is Azure ML's inference server's; metrics are never routed publicly.
HTTP_PORT: Final = 5001
METRICS_PORT: Final = 9090

# Probe and API paths.
SCORE_PATH: Final = "/score"
READY_PATH: Final = "/readyz"
LIVE_PATH: Final = "/healthz"
#: Served on METRICS_PORT only.
METRICS_PATH: Final = "/metrics"
SWAGGER_PATH: Final = "/swagger.json"
#: The routes whose requests are scoring work (a Prometheus regex over the `route` label).
WORK_ROUTES_REGEX: Final = "/score|/v2/models/.+/infer"

#: The Bearer keys: one file per key in SCORING_API_KEYS_DIR (a mounted Secret).
KEY_FILES: Final = ("primary", "secondary")

#: Azure ML's answer header that names the deployment that answered; the edge routes a
#: request carrying it to that deployment alone.
DEPLOYMENT_HEADER: Final = "azureml-model-deployment"
#: The pod label that names its deployment (the downward API fills SCORING_DEPLOYMENT_NAME
#: from it; the metrics carry it as `deployment`).
DEPLOYMENT_LABEL: Final = "aks-gpu-scoring/deployment"

#: A deployment name: a DNS-1123 label short enough for the objects named after it.
DEPLOYMENT_NAME_MAX: Final = 24
_DEPLOYMENT_NAME: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DEPLOYMENT_NAME_RULE: Final = (f"at most {DEPLOYMENT_NAME_MAX} characters of a-z, 0-9 and '-', "
                               "starting with a letter and not ending with '-'")


def is_deployment_name(name: object) -> bool:
    """Whether ``name`` is a deployment name (``DEPLOYMENT_NAME_RULE``)."""
    return (isinstance(name, str) and len(name) <= DEPLOYMENT_NAME_MAX
            and _DEPLOYMENT_NAME.fullmatch(name) is not None)


# Paths inside the container.
#: Where an image built with the model inside holds it (the Dockerfile's MODEL_DIR build arg).
MODEL_PATH_IN_IMAGE: Final = "/opt/scoring/model"
#: The emptyDir the fetch fills; the verified model appears at ``FETCHED_MODEL_PATH``.
MODEL_VOLUME_PATH: Final = "/var/lib/scoring"
FETCHED_MODEL_PATH: Final = f"{MODEL_VOLUME_PATH}/model"
#: Where the stack mounts the keys' Secret.
KEYS_PATH: Final = "/etc/scoring/keys"
#: The user the image runs as (the Dockerfile's APP_UID build arg); the pod runs as it too.
APP_UID: Final = 10001
#: The init container's command: the same image, fetching the model (FETCH_VARIABLES).
FETCH_COMMAND: Final = ("python3", "-m", "scoring_app.model_store.fetch")


@dataclass(frozen=True)
class ServiceEnv:
    """What the stack tells one deployment's scoring container, as typed fields;
    ``env()`` renders the Deployment's ``env`` list. The keys are files, never
    variables; the deployment's name comes from the pod's own label."""

    model_name: str
    model_version: str
    precision: str
    graceful_timeout_s: int
    drain_s: float
    model_dir: str = MODEL_PATH_IN_IMAGE
    preprocess: str = ""  # empty: unset (an image-tensor model is refused at start)
    capture_uri: str = ""  # empty: no capture variables at all (the stack passes an Output)
    capture_sample_rate: float = 1.0
    capture_images: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)  # scoringEnv, never a STACK_VARIABLE

    def env(self) -> list[dict]:
        """The list in the stack's order: a model in the image has its directory first; a
        fetched model's directory and the capture variables (what the model store adds)
        follow ``extra``. A Deployment whose list is reordered rolls all its pods, so the
        order is part of what the stack declares."""
        model_dir, fetched = {Var.MODEL_DIR: self.model_dir}, self.model_dir == FETCHED_MODEL_PATH
        values = {
            **({} if fetched else model_dir),
            Var.MODEL_NAME: self.model_name,
            Var.MODEL_VERSION: self.model_version,
            Var.API_KEYS_DIR: KEYS_PATH,
            Var.PORT: str(HTTP_PORT),
            Var.METRICS_PORT: str(METRICS_PORT),
            Var.GRACEFUL_TIMEOUT_S: str(self.graceful_timeout_s),
            Var.DRAIN_SECONDS: _number(self.drain_s),
            Var.PRECISION: self.precision,
            **({Var.PREPROCESS: self.preprocess} if self.preprocess else {}),
            **dict(self.extra),
            **(model_dir if fetched else {}),
            **({Var.CAPTURE_URI: self.capture_uri,
                Var.CAPTURE_SAMPLE_RATE: _number(self.capture_sample_rate),
                Var.CAPTURE_IMAGES: _flag(self.capture_images)} if self.capture_uri else {}),
        }
        return [{"name": Var.DEPLOYMENT_NAME, "valueFrom": {"fieldRef": {
                    "fieldPath": f"metadata.labels['{DEPLOYMENT_LABEL}']"}}},
                *({"name": name, "value": value} for name, value in values.items())]


@dataclass(frozen=True)
class FetchEnv:
    """What the stack tells the init container that fetches a model from Blob Storage."""

    model_uri: str
    digest: str
    model_dir: str = FETCHED_MODEL_PATH
    scan: bool = False
    #: the signer's files as mounted (empty: no signature check)
    public_key: str = ""
    certificate_chain: Iterable[str] = ()

    def env(self) -> list[dict]:
        chain = ":".join(self.certificate_chain)
        return [{"name": Var.MODEL_URI, "value": self.model_uri},
                {"name": Var.MODEL_DIGEST, "value": self.digest},
                {"name": Var.MODEL_DIR, "value": self.model_dir},
                *([{"name": Var.MODEL_PUBLIC_KEY, "value": self.public_key}] if self.public_key else []),
                *([{"name": Var.MODEL_CERTIFICATE_CHAIN, "value": chain}] if chain else []),
                *([{"name": Var.MODEL_SCAN, "value": "true"}] if self.scan else [])]


def _number(value: float) -> str:
    """A number as a variable holds it: ``5`` not ``5.0``."""
    return f"{value:g}"


def _flag(value: bool) -> str:
    return "true" if value else "false"
