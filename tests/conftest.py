"""Session fixtures shared by every part of the suite that talks to the
scoring service (tests/app, tests/reliability): the demo model is trained,
and the main server booted, once per session, whichever parts run.
The machinery (Server, SecretDir) lives in tests/app/conftest.py."""

from __future__ import annotations

import pytest
import requests

from tests.app import media
from tests.app.conftest import SecretDir, Server


@pytest.fixture(scope="session")
def trained_model():
    """The demo colour classifier, trained once per session (a few seconds)."""
    from scoring_tools import demo_model
    return demo_model.train(count=2000)


@pytest.fixture(scope="session")
def encoded_model_dir(trained_model, tmp_path_factory):
    from scoring_tools import demo_model
    return demo_model.export(trained_model, tmp_path_factory.mktemp("m") / "encoded", "encoded")


@pytest.fixture(scope="session")
def tensor_model_dir(trained_model, tmp_path_factory):
    from scoring_tools import demo_model
    return demo_model.export(trained_model, tmp_path_factory.mktemp("m") / "tensor", "tensor")


@pytest.fixture(scope="session")
def prepared_resnet50(tmp_path_factory):
    """ResNet50 as `python -m scoring_tools.prepare_model` writes it, once per session: random
    weights (nothing can be downloaded here) saved to a file and given as --weights, so the
    same network stays in hand as the reference; stand-in class names in Keras's class index
    format as --labels."""
    import json
    import types

    import tensorflow as tf

    from scoring_tools import prepare_model
    root = tmp_path_factory.mktemp("resnet50")
    tf.keras.utils.set_random_seed(27)
    network = tf.keras.applications.ResNet50(weights=None)
    network.save_weights(root / "random.weights.h5")
    labels = [f"stand-in class {i}" for i in range(prepare_model.NUM_CLASSES)]
    index = {str(i): [f"n{i:08d}", name] for i, name in enumerate(labels)}
    (root / "imagenet_class_index.json").write_text(json.dumps(index), encoding="utf-8")
    assert prepare_model.main(["resnet50", str(root / "model"),
                               "--weights", str(root / "random.weights.h5"),
                               "--labels", str(root / "imagenet_class_index.json")]) == 0
    return types.SimpleNamespace(dir=root / "model", network=network, labels=labels)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One Azurite (HTTPS + OAuth, on 127.0.0.1) per session, for the fetch tests and the
    container tests (tests/model_store/azurite.py)."""
    from tests.model_store.azurite import Azurite
    emulator = Azurite(tmp_path_factory.mktemp("azurite")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def secret_dir(tmp_path_factory):
    keys = SecretDir(tmp_path_factory.mktemp("keys") / "scoring-keys")
    keys.write(primary="primary-key-1", secondary="secondary-key-1")
    return keys


@pytest.fixture(scope="session")
def server(encoded_model_dir, secret_dir, tmp_path_factory):
    """The main server: string-input model, two workers (multiprocess metrics),
    small body/pixel limits so the bad-input table stays cheap."""
    srv = Server({
        "SCORING_MODEL_DIR": str(encoded_model_dir),
        "SCORING_MODEL_NAME": "colours", "SCORING_MODEL_VERSION": "7",
        "SCORING_API_KEYS_DIR": str(secret_dir.path),
        "SCORING_WORKERS": "2", "SCORING_THREADS": "16",
        "SCORING_MAX_BATCH_SIZE": "8", "SCORING_BATCH_TIMEOUT_MS": "50",
        "SCORING_MAX_BODY_BYTES": str(media.MAX_BODY),
        "SCORING_MAX_IMAGE_PIXELS": str(media.MAX_PIXELS),
        "TMPDIR": str(tmp_path_factory.mktemp("server")),
    })
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def spec(server):
    return requests.get(server.url + "/swagger.json", timeout=10).json()
