"""settings: every SCORING_* variable, its parser, the typed Config."""

from __future__ import annotations

import pytest

from scoring_app import settings
from tests.app.conftest import ROOT


def test_defaults_parse_and_match_the_contract():
    cfg = settings.load({})
    assert (cfg.port, cfg.metrics_port, cfg.auth, cfg.preprocess) == (5001, 9090, "required", "none")


@pytest.mark.parametrize("name,value", [
    ("SCORING_MAX_BATCH_SIZE", "0"), ("SCORING_MAX_BATCH_SIZE", "lots"),
    ("SCORING_PREPROCESS", "keras"), ("SCORING_APPLY_SOFTMAX", "maybe"),
    ("SCORING_PORT", "70000"), ("SCORING_MODEL_DIR", " "), ("SCORING_AUTH", "off"),
])
def test_a_bad_value_names_the_variable(name, value):
    with pytest.raises(settings.SettingsError, match=name):
        settings.load({name: value})


def test_readme_table_is_generated_from_the_settings_module():
    assert settings.markdown_table() in (ROOT / "README.md").read_text()


def test_every_variable_named_in_the_contract_is_declared():
    import re
    contract = (ROOT / "docs" / "contract.md").read_text()
    declared = {s.name for s in settings.SETTINGS}
    assert set(re.findall(r"SCORING_[A-Z0-9_]+[A-Z0-9]", contract)) <= declared
