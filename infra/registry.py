"""The registry and the scoring image: ACR without admin user, the image pushed by digest, and
cache rules that serve the edge's Docker Hub images to the nodes (infra/pins.py MIRRORED).

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pulumi
import pulumi_docker_build as docker_build
from pulumi_azure_native import authorization, containerregistry
from pulumi_command import local

from infra import pins
from infra.config import REPO_ROOT, Baked, DeploymentConfig, ImageConfig
from infra.content_tag import content_tag
from infra.names import globally_unique
from infra.roles import ACR_PULL, ACR_PUSH, grant
from scoring_app.contract import MODEL_PATH_IN_IMAGE

APP_DIR = REPO_ROOT / "scoring_app"
REPOSITORY = "scoring"
#: The `model` build context when the model is not baked in (a README, no SavedModel).
NO_MODEL_DIR = REPO_ROOT / "infra" / "no_model"


@dataclass
class RegistryImageArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    kubelet_object_id: pulumi.Input[str]
    image: ImageConfig
    deployments: tuple[DeploymentConfig, ...]  # each names its model (or a prebuilt image)


class RegistryImage(pulumi.ComponentResource):
    """ACR, pull rights for the cluster's kubelet, and each deployment's scoring image built
    and pushed to it: one build per distinct SavedModel directory (two deployments of the
    same model share an image)."""

    login_server: pulumi.Output[str]
    mirrors: list[containerregistry.CacheRule]  # Docker Hub repositories served by the registry
    node_pull: list[pulumi.Resource]  # the cache rules and the kubelet's AcrPull
    image_refs: dict[str, pulumi.Output[str]]  # deployment -> <registry>/<repo>@sha256:<digest>

    def __init__(self, name: str, args: RegistryImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:RegistryImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        deployer = authorization.get_client_config_output()

        registry = containerregistry.Registry(
            f"{name}-acr",
            registry_name=globally_unique(name, 40, child),  # 5-50 alphanumerics
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku={"name": args.image.registry_sku},
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            opts=child,
        )
        # Docker Hub's anonymous pull limit is per address, and every node pulls the edge's
        # images: a cache rule per repository has the registry pull each tag once and
        # serve it to the nodes (kubelet AcrPull below), so node pulls never reach Docker Hub.
        self.mirrors = [containerregistry.CacheRule(
            f"{name}-cache-{target.replace('/', '-')}",
            cache_rule_name=target.replace("/", "-"),
            registry_name=registry.name, resource_group_name=args.resource_group_name,
            source_repository=source, target_repository=target, opts=child)
            for target, source in sorted(pins.MIRRORED.items())]
        # The kubelet identity pulls images, not the cluster's control-plane identity.
        kubelet_pull = grant(f"{name}-kubelet-pull", args.kubelet_object_id, ACR_PULL,
                             registry.id, deployer.subscription_id, child,
                             principal_type="ServicePrincipal")
        #: What a pod pulling the edge's images through the registry waits for.
        self.node_pull = [*self.mirrors, kubelet_pull]
        self.login_server = registry.login_server
        self.image_refs, built, push_role = {}, {}, None
        for deployment in args.deployments:  # sorted by name
            source = deployment.source
            if source.prebuilt_image:
                self.image_refs[deployment.name] = pulumi.Output.from_input(source.prebuilt_image)
                continue
            # A model baked in: one image per distinct model. Otherwise every deployment runs
            # the one app-only image (its tag changes only with the app; the models are data,
            # infra/model_store.py).
            model_context = source.model_dir if isinstance(source, Baked) else NO_MODEL_DIR
            if model_context not in built:
                if push_role is None:
                    push_role = grant(f"{name}-deployer-push", deployer.object_id, ACR_PUSH,
                                      registry.id, deployer.subscription_id, child)
                # The first model keeps the names a single-model stack always had.
                suffix = "" if not built else f"-{deployment.name}"
                built[model_context] = self._build(
                    f"{name}{suffix}", registry, push_role, model_context,
                    deployer.subscription_id)
            self.image_refs[deployment.name] = built[model_context]
        self.register_outputs({"loginServer": self.login_server, "imageRefs": self.image_refs})

    def _build(self, name, registry, push_role, model_context,
               subscription: pulumi.Input[str]) -> pulumi.Output[str]:
        tag = content_tag(APP_DIR, model_context)
        login = local.Command(
            f"{name}-login",
            # In the subscription azure-native deploys into (getClientConfig answers the
            # provider's own), not the az CLI's active one, which may be another.
            create=pulumi.Output.concat("az acr login --name ", registry.name,
                                        " --subscription ", subscription),
            triggers=[registry.login_server, tag],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[push_role]))
        built = docker_build.Image(
            f"{name}-image",
            push=True,
            # Never during a preview: a preview would pull the multi-GB base image and build
            # for nothing (and count against Docker Hub's anonymous pull limit).
            build_on_preview=False,
            tags=[pulumi.Output.concat(registry.login_server, f"/{REPOSITORY}:{tag}")],
            # Relative paths keep the state identical across machines and checkouts.
            context=docker_build.BuildContextArgs(
                location=os.path.relpath(APP_DIR, REPO_ROOT),
                named={"model": docker_build.ContextArgs(
                    location=os.path.relpath(model_context, REPO_ROOT))}),
            dockerfile=docker_build.DockerfileArgs(
                location=os.path.relpath(APP_DIR / "Dockerfile", REPO_ROOT)),
            build_args={"MODEL_DIR": MODEL_PATH_IN_IMAGE},
            platforms=[docker_build.Platform.LINUX_AMD64],
            # No `registries`: the push uses the host's Docker credentials (see above).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[push_role, login]),
        )
        return pulumi.Output.concat(registry.login_server, f"/{REPOSITORY}@", built.digest)
