"""model/savedmodel: the SavedModel behind the stages, on the demo models."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from scoring_app import settings
from scoring_app.errors import BadImage, UnsupportedModel
from scoring_app.model.savedmodel import ScoringModel, batch_sizes, inspect_signature, signature_callers
from tests.app import media


def test_batch_sizes_are_powers_of_two_then_the_max():
    assert batch_sizes(1) == [1]
    assert batch_sizes(8) == [1, 2, 4, 8]
    assert batch_sizes(12) == [1, 2, 4, 8, 12]


def _spec(shape, dtype):
    import tensorflow as tf
    return tf.TensorSpec(shape, dtype)


@pytest.mark.parametrize("inputs,outputs,output,message", [
    ({"a": ([None], "string"), "b": ([None], "string")}, {"s": ([None, 3], "float32")}, "",
     "found inputs"),
    ({"x": ([None, None, None, 3], "uint8")}, {"s": ([None, 3], "float32")}, "", "known H and W"),
    ({"x": ([None, 8, 8, 1], "float32")}, {"s": ([None, 3], "float32")}, "", "supported"),
    ({"x": ([None], "int32")}, {"s": ([None, 3], "float32")}, "", "supported"),
    ({"x": ([None], "string")}, {"a": ([None, 3], "float32"), "b": ([None, 2], "float32")}, "",
     "SCORING_OUTPUT naming one of: a, b"),
    ({"x": ([None], "string")}, {"a": ([None, 3], "float32")}, "zz", "SCORING_OUTPUT='zz'"),
])
def test_unsupported_signatures_say_what_was_found(inputs, outputs, output, message):
    with pytest.raises(UnsupportedModel, match=message):
        inspect_signature({k: _spec(*v) for k, v in inputs.items()},
                          {k: _spec(*v) for k, v in outputs.items()}, output)


def test_signature_picks_named_output_among_several():
    sig = inspect_signature({"x": _spec([None, 8, 9, 3], "float32")},
                            {"a": _spec([None, 3], "float32"), "b": _spec([None, 5], "float32"),
                             "ids": _spec([None], "int64")}, "b")
    assert (sig.kind, sig.image_size, sig.output_name, sig.num_classes) == ("tensor", (8, 9), "b", 5)


def _model(model_dir, **overrides):
    overrides.setdefault("preprocess", "none")  # the demo's image-tensor model takes pixels as they are
    model = ScoringModel(settings.load({}, model_dir=str(model_dir), max_batch_size=4, **overrides))
    model.load()
    return model


def test_load_reads_labels_from_assets(encoded_model_dir):
    model = _model(encoded_model_dir)
    assert model.device == "cpu"  # tensorflow-cpu: SCORING_MODEL_CALLS=auto gives it 2 calls
    assert model.signature.kind == "encoded"
    assert model.labels[:3] == ["black", "white", "red"]


def test_labels_file_overrides_assets_and_must_match_k(encoded_model_dir, tmp_path):
    labels = tmp_path / "l.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(6)))
    assert _model(encoded_model_dir, labels_file=str(labels)).labels[0] == "c0"
    labels.write_text("only\ntwo\n")
    with pytest.raises(UnsupportedModel, match="2 labels for 6"):
        _model(encoded_model_dir, labels_file=str(labels))


def test_image_tensor_model_needs_preprocess_said(tensor_model_dir):
    """Unset, an image-tensor model is refused, naming the variable, the input and the value."""
    with pytest.raises(UnsupportedModel) as refused:
        _model(tensor_model_dir, preprocess="")
    message = str(refused.value)
    assert "SCORING_PREPROCESS is not set" in message
    assert "'images': uint8 [N, 32, 32, 3]" in message
    assert "deployments.<name>.preprocess" in message and "none: uint8 pixels" in message


def test_string_input_model_needs_no_preprocess(encoded_model_dir):
    assert _model(encoded_model_dir, preprocess="").signature.kind == "encoded"


def test_uint8_model_refuses_float_preprocessing(tensor_model_dir):
    with pytest.raises(UnsupportedModel, match="SCORING_PREPROCESS=caffe"):
        _model(tensor_model_dir, preprocess="caffe")


def test_not_a_saved_model_is_unsupported(tmp_path):
    with pytest.raises(UnsupportedModel, match="cannot load"):
        _model(tmp_path)


@pytest.mark.parametrize("kind", ["encoded", "tensor"])
def test_stages_end_to_end_with_padding(kind, encoded_model_dir, tensor_model_dir):
    model = _model(encoded_model_dir if kind == "encoded" else tensor_model_dir)
    items = [model.preprocess(media.jpeg(c)) for c in (media.RED, media.GREEN, media.BLUE)]
    scores = model.predict(items)  # 3 images, padded to 4 inside
    assert scores.shape == (3, 6)
    tops = [model.postprocess(row, 2) for row in scores]
    assert [t[0]["label"] for t in tops] == ["red", "green", "blue"]
    assert all(len(t) == 2 and t[0]["score"] >= t[1]["score"] for t in tops)


def test_predict_called_from_threads_at_once_gives_each_call_its_own_scores(encoded_model_dir):
    """What SCORING_MODEL_CALLS above 1 relies on, and TensorFlow does not promise:
    calls of the signature side by side on this CPU return what each returns alone."""
    model = _model(encoded_model_dir)
    colours = (media.RED, media.GREEN, media.BLUE)
    batches = [[model.preprocess(media.jpeg(colours[(i + j) % 3])) for j in range(1 + i % 4)] for i in range(6)]
    alone = [model.predict(batch) for batch in batches]
    start, wrong = threading.Barrier(len(batches)), []

    def hammer(i):
        start.wait()
        for _ in range(25):
            scores = model.predict(batches[i])
            if not np.allclose(scores, alone[i], rtol=1e-5, atol=1e-6):
                wrong.append((i, scores, alone[i]))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not wrong, wrong[:1]
    assert [int(row.argmax()) for row in alone[2]] == [4, 2, 3]  # blue, red, green: a mix-up would show


def test_softmax_option(encoded_model_dir):
    plain = _model(encoded_model_dir).predict([media.jpeg()])
    soft = _model(encoded_model_dir, apply_softmax=True).predict([media.jpeg()])
    e = np.exp(plain - plain.max())
    np.testing.assert_allclose(soft, e / e.sum(), rtol=1e-5)


def test_model_decode_failure_is_a_bad_image(encoded_model_dir):
    model = _model(encoded_model_dir)
    with pytest.raises(BadImage, match="could not decode"):
        model.predict([media.BAD_INPUTS["truncated jpeg"][0]])


@pytest.mark.parametrize("kind", ["encoded", "tensor"])
def test_warm_up_calls_the_signature_directly_with_the_same_scores(kind, encoded_model_dir, tensor_model_dir):
    model = _model(encoded_model_dir if kind == "encoded" else tensor_model_dir)
    items = [model.preprocess(media.jpeg(c)) for c in (media.RED, media.GREEN, media.BLUE)]
    public = model.predict(items)
    assert not model.calls_directly
    model.warm_up()
    assert model.calls_directly
    np.testing.assert_allclose(model.predict(items), public, rtol=1e-6)
    if kind == "encoded":  # the direct call's decode error is still the client's
        with pytest.raises(BadImage, match="could not decode"):
            model.predict([media.BAD_INPUTS["truncated jpeg"][0]])


@pytest.mark.parametrize("fault", ["other scores", "raises"])
def test_a_direct_call_that_disagrees_is_not_used(fault, encoded_model_dir, caplog):
    model = _model(encoded_model_dir)
    direct = model._direct

    def broken(tensor):
        if fault == "raises":
            raise TypeError("no such call")
        out = dict(direct(tensor))
        out["scores"] = out["scores"] + 1.0
        return out

    model._direct = broken
    expected = model.predict([model.preprocess(media.jpeg())])
    with caplog.at_level("WARNING", logger="scoring_app.model"):
        model.warm_up()
    assert not model.calls_directly
    np.testing.assert_allclose(model.predict([model.preprocess(media.jpeg())]), expected, rtol=1e-6)
    assert "using its public call" in caplog.text


def test_a_signature_without_the_private_call_gets_the_public_one():
    calls = []
    direct, public = signature_callers(lambda **kw: calls.append(kw) or {"out": 1}, "images")
    assert direct is public
    assert public("t") == {"out": 1} and calls == [{"images": "t"}]


def test_labels_fall_back_to_indices(encoded_model_dir, tmp_path):
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(encoded_model_dir, bare)
    (bare / "assets" / "labels.txt").unlink()
    model = _model(bare)
    assert model.postprocess(np.array([0.1, 0.7, 0.2]), 1) == [
        {"label": "1", "index": 1, "score": pytest.approx(0.7)}]
