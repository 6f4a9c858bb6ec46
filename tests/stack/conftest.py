"""Fixtures: the program run under mocks once per stack file, plus one variant run."""
import sys

import pytest

from stack_harness import REPO, STACKS, run_programs

if str(REPO) not in sys.path:  # the config and unit tests import infra/ in-process
    sys.path.insert(0, str(REPO))

PREBUILT = "contoso.azurecr.io/scoring@sha256:" + "ab" * 32
#: dev with every optional branch flipped: prebuilt image, GPU Operator route,
#: fixed DNS label, source ranges, and the primary key rotated.
VARIANT_OVERRIDES = {
    "prebuiltImage": PREBUILT,
    "gpuDriver": "gpu-operator",
    "dnsLabel": "contoso-scoring",
    "loadBalancerSourceRanges": ["198.51.100.0/24"],
    "primaryKeyVersion": "2",
    "precision": "mixed",
}


#: A model published by someone else (modelUri), signed with a key the stack names.
EXTERNAL_MODEL = {
    "modelUri": "https://theirmodels.blob.core.windows.net/published/resnet50/" + "c" * 64,
    "modelDigest": "c" * 64,
    "modelUriScope": ("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/theirs/"
                      "providers/Microsoft.Storage/storageAccounts/theirmodels/blobServices/"
                      "default/containers/published"),
    "modelPublicKey": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A stand-in SavedModel directory: the build only hashes it here, nothing loads it."""
    path = tmp_path_factory.mktemp("model")
    (path / "saved_model.pb").write_bytes(b"not a real graph")
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory):
    """Another model version: one file changed."""
    path = tmp_path_factory.mktemp("model2")
    (path / "saved_model.pb").write_bytes(b"another graph")
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


@pytest.fixture(scope="session")
def runs(model_dir, other_model_dir, tmp_path_factory):
    """stack name -> Run for each stack file, "variant" -> dev with VARIANT_OVERRIDES,
    "baked" -> dev with the model in the image, "remodelled" -> dev with another model."""
    plan = {stack: (stack, {"modelDir": str(model_dir)}) for stack in STACKS}
    plan["variant"] = ("dev", {"modelDir": str(model_dir), **VARIANT_OVERRIDES})
    plan["baked"] = ("dev", {"modelDir": str(model_dir), "modelStore": "image"})
    plan["remodelled"] = ("dev", {"modelDir": str(other_model_dir)})
    plan["external"] = ("dev", {"modelDir": str(model_dir), **EXTERNAL_MODEL})
    return run_programs(plan, tmp_path_factory.mktemp("runs"))


#: A second `pulumi up` with nothing changed, years later and with another hash seed: any
#: timestamp, fresh token, random value or set ordering in an input would show as a change.
LATER = {"MOCK_RUN_CLOCK": "2031-06-15T03:04:05+00:00", "PYTHONHASHSEED": "1"}


@pytest.fixture(scope="session")
def reruns(model_dir, tmp_path_factory):
    """stack name -> the same program and config run again under LATER; "resized" -> dev
    with another GPU size (what changing gpuVmSize declares)."""
    plan = {stack: (stack, {"modelDir": str(model_dir)}, LATER) for stack in STACKS}
    plan["resized"] = ("dev", {"modelDir": str(model_dir), "gpuVmSize": "Standard_NC8as_T4_v3"})
    return run_programs(plan, tmp_path_factory.mktemp("reruns"))


@pytest.fixture(params=STACKS)
def stack_run(request, runs):
    return runs[request.param]
