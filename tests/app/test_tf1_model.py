"""A TF1 SavedModel (the official ResNet's shape) loads through tf.saved_model.load and is
served: its ``probabilities`` output chosen by name, its 1001 classes named with the 1000
ImageNet names after a background class."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from scoring_app import settings
from scoring_app.errors import UnsupportedModel
from scoring_app.model.savedmodel import ScoringModel, inspect_signature
from scoring_tools import prepare_model
from tests.app import media
from tests.app.conftest import ROOT


@pytest.fixture(scope="module")
def tf1_model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf1")
    subprocess.run([sys.executable, "-m", "tests.app.tf1_model", str(root / "model")],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    names = root / "names.txt"
    names.write_text("\n".join(f"imagenet {i}" for i in range(1000)) + "\n")
    assert prepare_model.main(["--add-labels", str(root / "model"), "--labels", str(names)]) == 0
    return root / "model"


def test_tf1_model_is_served_with_background_first(tf1_model_dir):
    import tensorflow as tf
    model = ScoringModel(settings.load({}, model_dir=str(tf1_model_dir), max_batch_size=2))
    model.load()
    assert (model.signature.kind, model.signature.output_name, model.num_classes) == (
        "encoded", "probabilities", 1001)
    assert model.labels[:2] == ["background", "imagenet 0"] and len(model.labels) == 1001
    model.warm_up()
    images = [media.jpeg(media.RED), media.jpeg(media.BLUE)]
    scores = model.predict([model.preprocess(image) for image in images])
    fn = tf.saved_model.load(str(tf1_model_dir)).signatures["serving_default"]
    direct = fn(input=tf.constant(images))
    np.testing.assert_allclose(scores, direct["probabilities"].numpy(), rtol=1e-6)
    assert scores.argmax(1).tolist() == direct["classes"].numpy().tolist()
    top = model.postprocess(scores[0], 1)[0]
    assert top["label"] == model.labels[top["index"]]
    assert top["label"] == ("background" if top["index"] == 0 else f"imagenet {top['index'] - 1}")


def test_probabilities_is_chosen_by_name_among_several_outputs():
    import tensorflow as tf
    inputs = {"input": tf.TensorSpec([None], tf.string)}
    outputs = {"logits": tf.TensorSpec([None, 1001], tf.float32),
               "probabilities": tf.TensorSpec([None, 1001], tf.float32)}
    assert inspect_signature(inputs, outputs).output_name == "probabilities"
    assert inspect_signature(inputs, outputs, "logits").output_name == "logits"
    with pytest.raises(UnsupportedModel, match="one named 'probabilities', or SCORING_OUTPUT"):
        inspect_signature(inputs, {"a": outputs["logits"], "b": outputs["logits"]})


def test_background_is_added_only_to_imagenet_names_for_1001_classes(tf1_model_dir, tmp_path):
    """999 names for 1001 classes is a mismatch, refused as before, not shifted."""
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(999)) + "\n")
    model = ScoringModel(settings.load({}, model_dir=str(tf1_model_dir), labels_file=str(labels)))
    with pytest.raises(UnsupportedModel, match="999 labels for 1001 model classes"):
        model.load()


def test_add_labels_refuses_to_overwrite_or_to_write_beside_no_model(tf1_model_dir, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"other {i}" for i in range(1000)) + "\n")
    before = (tf1_model_dir / "assets" / "labels.txt").read_text()
    assert prepare_model.main(["--add-labels", str(tf1_model_dir), "--labels", str(names)]) == 2
    assert "labels.txt exists; pass --force" in capsys.readouterr().err
    assert (tf1_model_dir / "assets" / "labels.txt").read_text() == before
    assert prepare_model.main(["--add-labels", str(tmp_path), "--labels", str(names)]) == 2
    assert "no saved_model.pb there" in capsys.readouterr().err
