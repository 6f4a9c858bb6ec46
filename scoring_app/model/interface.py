"""What the service and the batcher need of a model, written down once.

``ScoringModel`` is the real one; the tests' stand-ins satisfy the same
``Protocol`` (tests/app/test_model_interface.py checks both).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from .precision import Report

#: One class of an answer: ``{"label": str, "index": int, "score": float}``.
Prediction = dict[str, Any]


@runtime_checkable
class Model(Protocol):
    """A model in stages: ``load`` -> ``warm_up`` -> per request, ``preprocess``
    (the request's thread or greenlet) -> ``predict`` (the batcher's model
    thread, a whole batch) -> ``postprocess`` (the request's again)."""

    #: The batch sizes ``predict`` pads to, ascending (the largest is the biggest call).
    sizes: list[int]
    #: Seconds per ``predict`` call at each size, filled by ``warm_up``
    #: (empty: uncalibrated; the batch policy then takes sizes as they come).
    call_seconds: dict[int, float]
    #: Where ``predict`` runs, ``"cpu"`` or ``"gpu"``, once loaded (None: not said).
    device: str | None
    #: The precision warm-up chose and what its guard measured (None: not chosen).
    precision: Report | None

    @property
    def num_classes(self) -> int | None:
        """K, the scores per image, if the model declares it."""

    def load(self) -> float:
        """Load and check; returns the seconds it took. Raises ``UnsupportedModel``."""

    def warm_up(self) -> float:
        """Call every batch size (and time it into ``call_seconds``); returns the seconds it took."""

    def preprocess(self, data: bytes) -> Any:
        """One request image -> one batch item; raises ``BadImage``/``TooManyPixels``."""

    def predict(self, items: list[Any]) -> np.ndarray:
        """A batch of items -> ``[len(items), K]`` scores, one model call."""

    def postprocess(self, scores: np.ndarray, top_k: int) -> list[Prediction]:
        """One row of scores -> the ``top_k`` classes, best first."""
