"""settings: every SCORING_* variable, its parser, the typed Config."""

from __future__ import annotations

import pytest

from scoring_app import settings
from tests.app.conftest import ROOT


def test_defaults_parse_and_match_the_contract():
    cfg = settings.load({})
    assert (cfg.port, cfg.metrics_port, cfg.auth, cfg.preprocess) == (5001, 9090, "required", "")


@pytest.mark.parametrize("name,value", [
    ("SCORING_MAX_BATCH_SIZE", "0"), ("SCORING_MAX_BATCH_SIZE", "lots"),
    ("SCORING_PREPROCESS", "keras"), ("SCORING_APPLY_SOFTMAX", "maybe"),
    ("SCORING_PORT", "70000"), ("SCORING_MODEL_DIR", " "), ("SCORING_AUTH", "off"),
    ("SCORING_MODEL_CALLS", "0"), ("SCORING_MODEL_CALLS", "9"), ("SCORING_MODEL_CALLS", "many"),
])
def test_a_bad_value_names_the_variable(name, value):
    with pytest.raises(settings.SettingsError, match=name):
        settings.load({name: value})


@pytest.mark.parametrize("value, calls", [("auto", settings.AUTO), (" Auto ", settings.AUTO),
                                          ("1", 1), ("2", 2), ("8", 8)])
def test_model_calls_is_a_count_or_auto(value, calls):
    assert settings.load({"SCORING_MODEL_CALLS": value}).model_calls == calls
    assert settings.load({}).model_calls == settings.AUTO  # the default: by the device (service.py)


def test_the_service_pages_table_is_generated_from_the_settings_module():
    assert settings.markdown_table() in (ROOT / "docs" / "service.md").read_text()


def test_every_variable_named_in_the_contract_is_declared():
    import re
    contract = (ROOT / "docs" / "contract.md").read_text()
    from scoring_app.contract import FETCH_VARIABLES  # the init container's command reads these
    declared = {s.name for s in settings.SETTINGS} | set(FETCH_VARIABLES)
    assert set(re.findall(r"SCORING_[A-Z0-9_]+[A-Z0-9]", contract)) <= declared


def test_config_is_typed_frozen_and_refuses_a_typo():
    import dataclasses
    cfg = settings.load({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.max_queue = 1
    with pytest.raises(AttributeError):
        cfg.max_qeue  # noqa: B018 - a typo is an error, not None
    with pytest.raises(settings.SettingsError, match="unknown settings: max_qeue"):
        settings.load({}, max_qeue=4)
    with pytest.raises(settings.SettingsError, match="max_queue='4' is not a int"):
        settings.load({}, max_queue="4")
    with pytest.raises(settings.SettingsError, match="max_queue=True"):
        settings.load({}, max_queue=True)
    assert settings.load({}, batch_timeout_ms=5).batch_timeout_ms == 5  # an int is a float's value


def test_every_field_is_a_variable_and_its_default_parses_to_its_type():
    import dataclasses
    fields = {f.name: f.type for f in dataclasses.fields(settings.Config)}
    assert list(fields) == [s.field for s in settings.SETTINGS]
    cfg = settings.load({})
    for s in settings.SETTINGS:
        assert type(getattr(cfg, s.field)).__name__ == fields[s.field] == s.type, s.name
