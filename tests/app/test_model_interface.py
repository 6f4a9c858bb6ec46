"""The model's interface (scoring_app/model/interface.py) is what the real
model and every stand-in the tests give the service have in common."""

from __future__ import annotations

import inspect

import pytest

from scoring_app import settings
from scoring_app.model.interface import Model
from scoring_app.model.savedmodel import ScoringModel
from tests.app.test_inprocess import HeldModel
from tests.app.test_lane import StandInModel

MEMBERS = [name for name in vars(Model) if not name.startswith("_")] + list(Model.__annotations__)


@pytest.mark.parametrize("model", [ScoringModel(settings.load({})),
                                   HeldModel(), StandInModel()], ids=type)
def test_the_real_model_and_every_stand_in_satisfy_the_interface(model):
    assert isinstance(model, Model)
    for name in MEMBERS:
        assert hasattr(model, name), name
        if callable(getattr(Model, name, None)):
            wanted = len(inspect.signature(getattr(Model, name)).parameters) - 1  # less self
            assert len(inspect.signature(getattr(model, name)).parameters) == wanted, name


def test_the_interface_names_the_stages_and_the_timings():
    assert {"sizes", "call_seconds", "num_classes", "load", "warm_up", "preprocess", "predict",
            "postprocess"} <= set(MEMBERS)


def test_something_that_is_not_a_model_is_told_apart():
    class HalfAModel:
        sizes, call_seconds = [1], {}

        def predict(self, items):
            return items

    assert not isinstance(HalfAModel(), Model)
