"""SCORING_PRECISION and its guard (scoring_app/model/precision.py).

The guard's tests run on a model built to expose bf16: two classes whose
fp32 logits differ by 48 only through a weight (1 + 2**-9) that bf16 rounds
to 1.0, so fp32 says class 1 with certainty and bf16 a coin toss. Its
tripping proves that the guard compared two different precisions in one
process; the same model, served after the guard, proves which one serves.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import requests

from scoring_app import settings
from scoring_app.errors import UnsupportedModel
from scoring_app.model import precision
from scoring_app.model.savedmodel import ScoringModel, warmup_image
from scoring_tools import quickstart
from tests.app import media
from tests.app.conftest import Server

SAMPLES = {"red.jpg": "red", "green.png": "green", "yellow.jpg": "yellow"}
SIDE = 8


def _this_cpu() -> precision.Support:
    import tensorflow as tf
    return precision.detect(tf)


needs_rewrite = pytest.mark.skipif(_this_cpu().option is None,
                                   reason="this machine has no mixed-precision rewrite (see its Support)")


@pytest.fixture(autouse=True)
def rewrite_off_after():
    """Grappler's options are process-wide: no test leaves the rewrite on for the next."""
    yield
    import tensorflow as tf
    for option in (precision.CPU_OPTION, precision.GPU_OPTION):
        precision.set_rewrite(tf, option, False)


@pytest.fixture(scope="session")
def bf16_exposed_dir(tmp_path_factory):
    import tensorflow as tf
    weights = np.ones((SIDE * SIDE * 3, 2), np.float32)
    weights[:, 1] += 2.0 ** -9  # exact in fp32; bf16 keeps 7 fraction bits and rounds it to 1.0
    w = tf.constant(weights)

    class Exposed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SIDE, SIDE, 3], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"scores": tf.nn.softmax(tf.matmul(tf.reshape(pixels, [-1, SIDE * SIDE * 3]), w))}

    path = tmp_path_factory.mktemp("m") / "bf16-exposed"
    module = Exposed()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _model(model_dir, **overrides) -> ScoringModel:
    overrides.setdefault("preprocess", "none")  # the demo's image-tensor model takes pixels as they are
    model = ScoringModel(settings.load({}, model_dir=str(model_dir), max_batch_size=4, **overrides))
    model.load()
    return model


# -- the settings ----------------------------------------------------------
@pytest.mark.parametrize("env,field,value", [
    ({}, "precision", "fp32"),
    ({"SCORING_PRECISION": "fp32"}, "precision", "fp32"),
    ({"SCORING_PRECISION": "mixed"}, "precision", "mixed"),
    ({"SCORING_PRECISION": " Mixed "}, "precision", "mixed"),
    ({}, "guard_min_top1", 1.0),
    ({}, "guard_max_deviation", 0.02),
    ({}, "guard_action", "fallback"),
    ({"SCORING_GUARD_ACTION": "refuse"}, "guard_action", "refuse"),
    ({}, "validation_dir", ""),
])
def test_precision_settings_parse(env, field, value):
    assert getattr(settings.load(env), field) == value


@pytest.mark.parametrize("env,message", [
    ({"SCORING_PRECISION": "bf16"}, "SCORING_PRECISION='bf16' is not valid: must be one of fp32, mixed"),
    ({"SCORING_PRECISION": "fp16"}, "SCORING_PRECISION='fp16'"),
    ({"SCORING_PRECISION": ""}, "SCORING_PRECISION=''"),
    ({"SCORING_GUARD_ACTION": "ignore"}, "SCORING_GUARD_ACTION='ignore'"),
    ({"SCORING_GUARD_MIN_TOP1": "1.5"}, "SCORING_GUARD_MIN_TOP1='1.5' is not valid: must be between 0 and 1"),
    ({"SCORING_GUARD_MAX_DEVIATION": "-0.1"}, "SCORING_GUARD_MAX_DEVIATION='-0.1'"),
])
def test_unknown_precision_values_stop_the_process_naming_the_variable(env, message):
    with pytest.raises(settings.SettingsError, match=message.replace("(", r"\(")):
        settings.load(env)


# -- what mixed means on each device --------------------------------------
class _FakeTF:
    """tf.config's two calls ``detect`` makes, answering for a device that is not here."""

    def __init__(self, gpu_capability=None):
        import tensorflow as tf
        gpus = [] if gpu_capability is None else [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
        details = {"device_name": "Tesla T4", "compute_capability": gpu_capability}

        class Experimental:
            get_device_details = staticmethod(lambda device: details)

        class Config:
            list_physical_devices = staticmethod(lambda kind: gpus if kind == "GPU" else [])
            experimental = Experimental

        self.config = Config


@pytest.mark.parametrize("tf,flags,env,option,why", [
    (_FakeTF((7, 5)), set(), {}, precision.GPU_OPTION, ""),
    (_FakeTF((8, 0)), set(), {}, precision.GPU_OPTION, ""),
    (_FakeTF((6, 1)), set(), {}, None, "tensor cores"),
    (_FakeTF(), {"avx512f", "amx_bf16", "amx_tile"}, {}, precision.CPU_OPTION, ""),
    (_FakeTF(), {"avx512f", "avx512_bf16"}, {}, precision.CPU_OPTION, ""),
    (_FakeTF(), {"avx512f", "avx2"}, {}, None, "neither AVX512_BF16 nor AMX_BF16"),
    (_FakeTF(), {"avx2"}, {}, None, "emulate"),
    (_FakeTF(), {"amx_bf16"}, {"TF_ENABLE_ONEDNN_OPTS": "0"}, None, "TF_ENABLE_ONEDNN_OPTS=0"),
])
def test_each_device_gets_its_rewrite_or_a_reason(tf, flags, env, option, why):
    support = precision.detect(tf, flags=flags, environ=env)
    assert support.option == option
    assert why in support.why_not and bool(support.why_not) == (option is None)
    assert support.kind == {precision.GPU_OPTION: "fp16", precision.CPU_OPTION: "bf16", None: "fp32"}[option]


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\nbugs\t: spectre\n")
    assert precision.cpu_flags(info) == {"fpu", "avx512f", "amx_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


def test_compare_counts_top1_and_the_largest_change():
    reference = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    agreement = precision.compare(reference, np.array([[0.8, 0.2], [0.7, 0.3], [0.5, 0.5]]))
    assert agreement.images == 3 and agreement.top1_agreement == pytest.approx(2 / 3)
    assert agreement.max_deviation == pytest.approx(0.3)
    assert not agreement.within(1.0, 1.0) and not agreement.within(0.5, 0.2) and agreement.within(0.5, 0.3)
    with pytest.raises(ValueError, match="shapes"):
        precision.compare(reference, reference[:2])


# -- the guard, on the model built to expose bf16 --------------------------
def _fp32_scores(model_dir) -> np.ndarray:
    model = _model(model_dir)
    model.warm_up()
    return model.predict([model.preprocess(warmup_image())])


def test_fp32_is_as_before(bf16_exposed_dir):
    model = _model(bf16_exposed_dir)
    model.warm_up()
    assert model.precision == precision.Report("fp32", "fp32", "", "SCORING_PRECISION=fp32")
    np.testing.assert_allclose(model.predict([model.preprocess(warmup_image())])[0], [0.0, 1.0], atol=1e-6)


@needs_rewrite
def test_the_guard_trips_and_serves_fp32_again(bf16_exposed_dir, caplog):
    model = _model(bf16_exposed_dir, precision="mixed")
    with caplog.at_level(logging.WARNING, logger="scoring_app.model.savedmodel"):
        model.warm_up()
    report = model.precision
    assert (report.requested, report.served, report.reason) == ("mixed", "fp32", "guard failed")
    # two different precisions were compared: fp32 says class 1, bf16 ties the two
    assert report.agreement.images == 1 and report.agreement.top1_agreement == 0.0
    assert report.agreement.max_deviation == pytest.approx(0.5, abs=0.01)
    assert "failed the guard, serving fp32" in caplog.text and "top-1 agreement 0.0%" in caplog.text
    # and what serves afterwards is fp32 again, bit for bit
    np.testing.assert_array_equal(model.predict([model.preprocess(warmup_image())]),
                                  _fp32_scores(bf16_exposed_dir))


@needs_rewrite
def test_the_guard_refuses_to_go_ready_when_told(bf16_exposed_dir):
    model = _model(bf16_exposed_dir, precision="mixed", guard_action="refuse")
    with pytest.raises(UnsupportedModel, match="failed its guard .*top-1 agreement 0.0%.*will not go ready"):
        model.warm_up()
    assert model.precision.served == "none" and model.precision.reason == "guard refused"


@needs_rewrite
def test_within_the_thresholds_mixed_serves_and_is_timed_in_mixed(bf16_exposed_dir, monkeypatch):
    import tensorflow as tf
    model = _model(bf16_exposed_dir, precision="mixed", guard_min_top1=0.0, guard_max_deviation=1.0)
    during = []
    predict = model.predict

    def spy(items):
        during.append(tf.config.optimizer.get_experimental_options().get(precision.CPU_OPTION, False))
        return predict(items)

    monkeypatch.setattr(model, "predict", spy)
    model.warm_up()
    assert model.precision.served == "bf16" and model.precision.reason == "guard passed"
    # the direct-call check (1, 2), the guard's fp32 reference (3) and mixed (4), then every
    # warm-up and timed call in the precision that serves
    assert during[:4] == [False, False, False, True]
    assert during[4:] and all(during[4:]), during
    assert len(model.call_seconds) == len(model.sizes)
    served = predict([model.preprocess(warmup_image())])
    np.testing.assert_allclose(served[0], [0.5, 0.5], atol=0.01)  # bf16's answer, not fp32's


def test_without_a_rewrite_mixed_serves_fp32_and_says_why(bf16_exposed_dir, monkeypatch, caplog):
    monkeypatch.setattr(precision, "detect", lambda tf: precision.Support("CPU (no native bf16)", None, "no bf16 here"))
    with caplog.at_level(logging.WARNING, logger="scoring_app.model.savedmodel"):
        model = _model(bf16_exposed_dir, precision="mixed")
        model.warm_up()
    lines = [r.getMessage() for r in caplog.records if "SCORING_PRECISION" in r.getMessage()]
    assert lines == ["SCORING_PRECISION=mixed: serving fp32 on CPU (no native bf16): no bf16 here"]
    assert (model.precision.served, model.precision.agreement) == ("fp32", None)
    np.testing.assert_array_equal(model.predict([model.preprocess(warmup_image())]),
                                  _fp32_scores(bf16_exposed_dir))


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "absent", "is not a directory"),
    (lambda d: d, "holds no files"),
])
def test_a_bad_validation_directory_stops_the_worker_at_load(bf16_exposed_dir, tmp_path, monkeypatch,
                                                            make, message):
    monkeypatch.setattr(precision, "detect", lambda tf: precision.Support("CPU", precision.CPU_OPTION))
    with pytest.raises(UnsupportedModel, match=message):
        _model(bf16_exposed_dir, precision="mixed", validation_dir=str(make(tmp_path)))


@needs_rewrite
def test_a_validation_file_that_is_no_image_is_named(bf16_exposed_dir, tmp_path):
    (tmp_path / "a.jpg").write_bytes(media.jpeg())
    (tmp_path / "notes.txt").write_text("not an image")
    model = _model(bf16_exposed_dir, precision="mixed", validation_dir=str(tmp_path))
    with pytest.raises(UnsupportedModel, match="cannot read .*notes.txt"):
        model.warm_up()


# -- the demo model: trained, so its agreement means something -------------
@needs_rewrite
def test_mixed_on_the_demo_model_classifies_every_sample(tensor_model_dir):
    model = _model(tensor_model_dir, precision="mixed", validation_dir=str(quickstart.SAMPLES))
    model.warm_up()
    report = model.precision
    assert report.served == "bf16", report
    assert report.agreement.images == 1 + len(list(quickstart.SAMPLES.iterdir()))
    assert report.agreement.top1_agreement == 1.0
    items = [model.preprocess((quickstart.SAMPLES / name).read_bytes()) for name in SAMPLES]
    assert [model.postprocess(row, 1)[0]["label"] for row in model.predict(items)] == list(SAMPLES.values())


def test_a_mixed_server_reports_its_precision_and_classifies_the_samples(encoded_model_dir, tmp_path):
    srv = Server({"SCORING_MODEL_DIR": str(encoded_model_dir), "SCORING_AUTH": "disabled",
                  "SCORING_PRECISION": "mixed", "SCORING_VALIDATION_DIR": str(quickstart.SAMPLES),
                  "SCORING_WORKERS": "1", "TMPDIR": str(tmp_path)})
    try:
        srv.wait_ready()
        for name, label in SAMPLES.items():
            answer = requests.post(srv.url + "/score", data=(quickstart.SAMPLES / name).read_bytes(),
                                   timeout=30)
            assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == label, answer.text
        text = srv.metrics()
    finally:
        srv.stop()
    served = _this_cpu().kind
    reason = "guard passed" if served != "fp32" else _this_cpu().why_not
    assert f'scoring_precision_info{{reason="{reason}",requested="mixed",served="{served}"}} 1.0' in text
    if served != "fp32":
        assert f'scoring_precision_top1_agreement{{served="{served}"}} 1.0' in text
        assert f'scoring_precision_max_deviation{{served="{served}"}} ' in text
    else:
        assert "scoring_precision_top1_agreement{" not in text
