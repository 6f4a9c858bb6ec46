"""Models as data: the model in Blob Storage, pulled at pod start with workload identity.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import authorization, storage
from pulumi_command import local

from infra import capture
from infra.config.capture import CaptureConfig
from infra.config import REPO_ROOT, ExternalModel
from infra.roles import STORAGE_BLOB_DATA_CONTRIBUTOR, STORAGE_BLOB_DATA_READER, grant
from infra.identity import workload_identity
from infra.names import globally_unique
from infra.scheduling import locked_down_container
from scoring_app.contract import (APP_UID, FETCH_COMMAND, FETCHED_MODEL_PATH, MODEL_VOLUME_PATH,
                                  FetchEnv, Var)
from scoring_app.model_store import manifest as mf

CONTAINER = "models"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
USE_LABEL = "azure.workload.identity/use"
#: The webhook injects the token into every container, init containers included, except those
#: this pod annotation names (Azure/azure-workload-identity pkg/webhook/webhook.go,
#: getSkipContainers): the scoring container serves the internet and needs no storage token.
SKIP_CONTAINERS_ANNOTATION = "azure.workload.identity/skip-containers"
#: The emptyDir the init container fills (the contract's MODEL_VOLUME_PATH).
VOLUME = "model"
#: modelPublicKey / modelCertificateChain: a ConfigMap (neither is a secret) holding each
#: deployment's as `<deployment>.pem` / `<deployment>.chain.pem`; its init container mounts
#: its own, as the file the fetch's variable names.
SIGNER_CONFIG_MAP = "scoring-model-signer"
SIGNER_MOUNT = "/etc/scoring/model-signer"
SIGNER_KEY = "public.pem"
SIGNER_CHAIN = "chain.pem"
#: variable -> (the file in SIGNER_MOUNT, the ConfigMap key's suffix after the deployment)
SIGNER_FILES = {Var.MODEL_PUBLIC_KEY: (SIGNER_KEY, ".pem"),
                Var.MODEL_CERTIFICATE_CHAIN: (SIGNER_CHAIN, ".chain.pem")}
SOFT_DELETE_DAYS = 7
#: Room for the staging directory's metadata and the stats file on top of the model.
VOLUME_HEADROOM_BYTES = 64 << 20
#: A fetch budget for rollout timeouts: the slowest throughput we plan for (bytes/s) plus a
#: fixed allowance for token exchange and retries. Measured figures: docs/models-as-data.md.
PLANNED_FETCH_BYTES_PER_S = 25e6
FETCH_FIXED_BUDGET_S = 120


@dataclass(frozen=True)
class PublishedModel:
    """What the plan knows of the model before any upload: its files and digest."""
    name: str
    model_dir: str
    digest: str
    total_bytes: int

    @property
    def prefix(self) -> str:
        return mf.prefix(self.name, self.digest)

    @property
    def volume_size_limit(self) -> str:
        mib = math.ceil((self.total_bytes + VOLUME_HEADROOM_BYTES) / (1 << 20))
        return f"{mib}Mi"

    @property
    def fetch_budget_s(self) -> int:
        return FETCH_FIXED_BUDGET_S + math.ceil(self.total_bytes / PLANNED_FETCH_BYTES_PER_S)


def quantity_bytes(text: str) -> int:
    units = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", text)
    if not match:
        raise ValueError(f"not a byte quantity: {text!r}")
    return math.ceil(float(match.group(1)) * units[match.group(2) or ""])


def describe(model_name: str, model_dir) -> PublishedModel:
    entries = mf.build(model_dir)
    return PublishedModel(model_name, str(model_dir), mf.digest(mf.encode(entries)),
                          sum(e.size for e in entries))


def external_fetch_budget_s(model: ExternalModel) -> int:
    """A modelUri model's size is not known here: budget for its whole emptyDir."""
    return FETCH_FIXED_BUDGET_S + math.ceil(
        quantity_bytes(model.size_limit) / PLANNED_FETCH_BYTES_PER_S)


@dataclass(frozen=True)
class Fetch:
    """What one deployment's pods fetch: the prefix, its digest, the room and time it takes,
    and what must exist before a pod starts (the upload, the federation, the read grant)."""
    model_uri: pulumi.Input[str]
    digest: str
    size_limit: str
    budget_s: int
    depends_on: tuple
    #: the signature the fetch requires: SIGNER_FILES' variable, its PEM and ConfigMap key
    signer_variable: str | None = None
    signer_pem: str | None = None
    signer_item: str | None = None


@dataclass(frozen=True)
class PodModel:
    """What the model store adds to one deployment's pods; infra/scoring.py builds the pod
    with it. The scoring container reads the fetched model read-only."""
    init_container: dict  # fetches and checks the model before the scoring container starts
    volumes: tuple[dict, ...]  # the emptyDir it fills, and the signer's ConfigMap
    mounts: tuple[dict, ...]  # the scoring container's
    service_env: dict  # ServiceEnv's fields: the fetched model's directory, capture's variables
    labels: dict  # has AKS's webhook inject the identity's token
    annotations: dict
    service_account_annotations: dict  # the identity the pods sign in as
    fetch_budget_s: int
    depends_on: tuple  # the upload, the federation, the grants
    signer_item: str | None = None  # its key in SIGNER_CONFIG_MAP, holding signer_pem
    signer_pem: str | None = None


def fetch_container(image: pulumi.Input[str], fetch: Fetch, scan: bool) -> dict:
    """The init container: the scoring image running the fetch (with `scan`, modelscan over
    the model too), as locked down as the scoring container."""
    signer, signer_mount = {}, []
    if fetch.signer_pem:
        path = f"{SIGNER_MOUNT}/{SIGNER_FILES[fetch.signer_variable][0]}"
        signer = ({"public_key": path} if fetch.signer_variable == Var.MODEL_PUBLIC_KEY
                  else {"certificate_chain": (path,)})
        signer_mount = [{"name": "model-signer", "mountPath": SIGNER_MOUNT, "readOnly": True}]
    return {
        "name": "fetch-model",
        "image": image,
        "imagePullPolicy": "Always",
        "command": list(FETCH_COMMAND),
        "env": FetchEnv(model_uri=fetch.model_uri, digest=fetch.digest, scan=scan,
                        **signer).env(),
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"cpu": "2", "memory": "1Gi"}},
        "securityContext": {**locked_down_container(), "runAsNonRoot": True,
                            "runAsUser": APP_UID, "runAsGroup": APP_UID},
        "volumeMounts": [{"name": VOLUME, "mountPath": MODEL_VOLUME_PATH},
                         {"name": "tmp", "mountPath": "/tmp"}, *signer_mount],
    }


def pod_model(fetch: Fetch, image: pulumi.Input[str], scan: bool, client_id: pulumi.Input[str],
              scoring_container: str, capture_env: dict | None = None,
              capture_grant: pulumi.Resource | None = None) -> PodModel:
    """One deployment's share: the fetch's container and volume, the identity's label, and
    what the scoring container gets. Only a capturing container keeps the identity's token
    (it writes the captures); the webhook skips the one the pod annotation names."""
    volumes = [{"name": VOLUME, "emptyDir": {"sizeLimit": fetch.size_limit}}]
    if fetch.signer_pem:
        volumes.append({"name": "model-signer", "configMap": {
            "name": SIGNER_CONFIG_MAP, "items": [{
                "key": fetch.signer_item, "path": SIGNER_FILES[fetch.signer_variable][0]}]}})
    annotations = {"scoring/model-sha256": fetch.digest}
    if not capture_env:
        annotations[SKIP_CONTAINERS_ANNOTATION] = scoring_container
    return PodModel(
        init_container=fetch_container(image, fetch, scan), volumes=tuple(volumes),
        mounts=({"name": VOLUME, "mountPath": MODEL_VOLUME_PATH, "readOnly": True},),
        service_env={"model_dir": FETCHED_MODEL_PATH, **(capture_env or {})},
        labels={USE_LABEL: "true"}, annotations=annotations,
        service_account_annotations={CLIENT_ID_ANNOTATION: client_id},
        fetch_budget_s=fetch.budget_s,
        depends_on=(*fetch.depends_on, *([capture_grant] if capture_grant else [])),
        signer_item=fetch.signer_item, signer_pem=fetch.signer_pem)


def signer_config_map(namespace, models: dict[str, PodModel]) -> dict | None:
    """The one ConfigMap infra/scoring.py declares for every deployment's key or chain
    (None: no deployment checks a signature)."""
    data = {m.signer_item: m.signer_pem.strip() + "\n"
            for _, m in sorted(models.items()) if m.signer_pem}
    if not data:
        return None
    return {"metadata": {"name": SIGNER_CONFIG_MAP, "namespace": namespace}, "data": data}


@dataclass
class ModelStoreArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    oidc_issuer_url: pulumi.Input[str]
    namespace: str
    service_account: str
    #: the scoring container's name: the one container that gets no storage token
    scoring_container: str
    #: deployment name -> its image: the init container runs the scoring image's fetch
    image_refs: dict[str, pulumi.Input[str]]
    #: deployment name -> its model: a modelDir the stack publishes (describe()), or a
    #: modelUri someone else published
    models: dict[str, PublishedModel | ExternalModel]
    #: deployment name -> the PEM public key its model's signature must verify with, or
    #: the PEM certificate chain that issued the signing certificate
    public_keys: dict[str, str] = field(default_factory=dict)
    certificate_chains: dict[str, str] = field(default_factory=dict)
    #: the stack-level modelUriScope: its grant was "<name>-pods-read" while modelUri was a
    #: stack key only, and keeps its state under the new name (a Pulumi alias)
    stack_uri_scope: str | None = None
    #: deployment name -> its capture config, for the deployments that capture
    captures: dict[str, CaptureConfig] = field(default_factory=dict)
    #: the deployments whose fetch runs modelscan over the model
    scanned: frozenset[str] = frozenset()


def publish_command(model, account_url: str) -> str:
    """The upload, run by the interpreter that runs this program (Pulumi's own venv,
    which requirements.txt fills), from the repository's root, quoted for a POSIX shell
    (macOS, Linux, WSL). Its path differs between machines; a rerun the change causes
    writes the same content-addressed bytes again."""
    return shlex.join([sys.executable, "-m", "scoring_tools.publish_model",
                       os.path.relpath(model.model_dir, REPO_ROOT), "--account-url", account_url,
                       "--container", CONTAINER, "--name", model.name,
                       "--expect-sha256", model.digest])


class ModelStore(pulumi.ComponentResource):
    """The account, container, published prefixes, the pods' identity and its read grants."""

    account_name: pulumi.Output[str]  # the stack's own account (else the first modelUri's)
    model_uri: pulumi.Output[str]  # the first deployment's (by name)
    model_uris: dict[str, pulumi.Output[str]]  # deployment -> the prefix its pods fetch
    pod_models: dict[str, PodModel]  # deployment -> what its pods get from the store
    client_id: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        deployer = authorization.get_client_config_output()
        identity, federation = workload_identity(
            name, args.resource_group_name, args.location, args.oidc_issuer_url,
            args.namespace, args.service_account, child)
        self.client_id = identity.client_id
        self._fetches: dict[str, Fetch] = {}
        self.model_uris = {}
        published = {d: m for d, m in args.models.items() if isinstance(m, PublishedModel)}
        external = {d: m for d, m in args.models.items() if isinstance(m, ExternalModel)}
        if published:
            self._publish(name, args, published, child, deployer, identity, federation)
        if external:
            self._read_elsewhere(name, args, external, bool(published), child, deployer,
                                 identity.principal_id, federation)
        if not published and args.captures:  # captures need the stack's own account
            self._account(name, args, child)
        elif not published:
            first = external[min(external)]
            self.account_name = pulumi.Output.from_input(first.container[0])
        self.capture_uri, capture_grant = None, None
        if args.captures:
            capture_grant = self._capture(name, args, child, deployer, identity)
        self.pod_models = {
            deployment: pod_model(
                fetch, args.image_refs[deployment], deployment in args.scanned, self.client_id,
                args.scoring_container,
                capture.service_env(self.capture_uri, args.captures[deployment])
                if deployment in args.captures else None,
                capture_grant if deployment in args.captures else None)
            for deployment, fetch in self._fetches.items()}
        self.model_uri = self.model_uris[min(self.model_uris)]
        self.register_outputs({"accountName": self.account_name, "modelUri": self.model_uri,
                               "identityClientId": self.client_id,
                               **({"captureUri": self.capture_uri} if self.capture_uri else {})})

    def _capture(self, name, args: ModelStoreArgs, child, deployer, identity) -> pulumi.Resource:
        """The captures container, its retention and the pods' write grant (returned: the
        capturing deployments' pods wait for it)."""
        _, writer = capture.declare(name, self._account_resource, args.resource_group_name,
                                    identity.principal_id, deployer.subscription_id,
                                    args.captures, child)
        self.capture_uri = pulumi.Output.concat(self._account_url, f"/{capture.CONTAINER}")
        return writer

    def _account(self, name, args: ModelStoreArgs, child) -> storage.StorageAccount:
        """The stack's own account (Entra ID only) and its blob service's soft delete."""
        account = storage.StorageAccount(
            f"{name}-account",
            account_name=globally_unique(name, 16, child),  # 3-24 lowercase alphanumerics
            resource_group_name=args.resource_group_name, location=args.location,
            kind="StorageV2", sku={"name": "Standard_LRS"}, access_tier="Hot",
            allow_shared_key_access=False,  # Entra ID only: no key can read a model
            allow_blob_public_access=False,
            allow_cross_tenant_replication=False,
            enable_https_traffic_only=True,
            minimum_tls_version="TLS1_2",
            default_to_o_auth_authentication=True,
            opts=child)
        storage.BlobServiceProperties(
            f"{name}-blob-service", account_name=account.name,
            resource_group_name=args.resource_group_name, blob_services_name="default",
            delete_retention_policy={"enabled": True, "days": SOFT_DELETE_DAYS},
            container_delete_retention_policy={"enabled": True, "days": SOFT_DELETE_DAYS},
            opts=child)
        self._account_resource, self.account_name = account, account.name
        self._account_url = pulumi.Output.concat("https://", account.name, ".blob.core.windows.net")
        return account

    @staticmethod
    def _fetch(args: ModelStoreArgs, deployment: str, **fields) -> Fetch:
        """A deployment's fetch, with its signer (config allows at most one) under a
        ConfigMap key of its own."""
        signer = {}
        for variable, pems in ((Var.MODEL_PUBLIC_KEY, args.public_keys),
                               (Var.MODEL_CERTIFICATE_CHAIN, args.certificate_chains)):
            if deployment in pems:
                signer = {"signer_variable": variable, "signer_pem": pems[deployment],
                          "signer_item": deployment + SIGNER_FILES[variable][1]}
        return Fetch(**signer, **fields)

    def _read_elsewhere(self, name, args: ModelStoreArgs, external: dict[str, ExternalModel],
                        own_container: bool, child, deployer, principal_id, federation) -> None:
        """modelUri models: read on each one's container, one grant per container (named from
        it, so another deployment on another container leaves this grant as it is)."""
        grants = {}
        for deployment, model in sorted(external.items()):
            if model.container not in grants:
                account, container = model.container
                renamed = not own_container and model.scope == args.stack_uri_scope
                grants[model.container] = grant(
                    f"{name}-read-{account}-{container}", principal_id,
                    STORAGE_BLOB_DATA_READER, model.scope, deployer.subscription_id,
                    pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(aliases=[
                        pulumi.Alias(name=f"{name}-pods-read")] if renamed else None)),
                    principal_type="ServicePrincipal")
            self.model_uris[deployment] = pulumi.Output.from_input(model.uri)
            self._fetches[deployment] = self._fetch(
                args, deployment, model_uri=model.uri, digest=model.sha256,
                size_limit=model.size_limit, budget_s=external_fetch_budget_s(model),
                depends_on=(federation, grants[model.container]))

    def _publish(self, name, args: ModelStoreArgs, models: dict[str, PublishedModel], child,
                 deployer, identity, federation) -> None:
        """The stack's own account and container, and each modelDir uploaded to its prefix."""
        account = self._account(name, args, child)
        container = storage.BlobContainer(
            f"{name}-container", account_name=account.name,
            resource_group_name=args.resource_group_name, container_name=CONTAINER,
            public_access="None", opts=child)

        reader = grant(f"{name}-pods-read", identity.principal_id, STORAGE_BLOB_DATA_READER,
                       container.id, deployer.subscription_id, child,
                       principal_type="ServicePrincipal")
        writer = grant(f"{name}-deployer-write", deployer.object_id, STORAGE_BLOB_DATA_CONTRIBUTOR,
                       container.id, deployer.subscription_id, child)

        account_url = self._account_url
        published = {}
        for deployment, model in sorted(models.items()):
            # Content-addressed: deployments that name the same model share its prefix (and
            # its upload); the first model keeps the name a single-model stack always had.
            if model.prefix not in published:
                suffix = "" if not published else f"-{deployment}"
                published[model.prefix] = local.Command(
                    f"{name}-publish{suffix}",
                    create=account_url.apply(lambda url, model=model: publish_command(model, url)),
                    dir=str(REPO_ROOT), triggers=[account.name, model.digest],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[container, writer]))
            uri = pulumi.Output.concat(account_url, f"/{CONTAINER}/{model.prefix}")
            self.model_uris[deployment] = uri
            self._fetches[deployment] = self._fetch(
                args, deployment, model_uri=uri, digest=model.digest,
                size_limit=model.volume_size_limit, budget_s=model.fetch_budget_s,
                depends_on=(published[model.prefix], federation, reader))
