"""gunicorn's app for the reliability tests: the real service, slowed down.

The real SavedModel, batcher, HTTP layer and gunicorn settings, started as
``python -m gunicorn --config scoring_app/gunicorn.conf.py
tests.reliability.slow_wsgi:app``. Only ``predict`` changes: every model call
first sleeps ``RELIABILITY_MODEL_DELAY_S`` (so capacity is small and set by
the test, not by this machine's CPU), and a batch holding an image that
carries ``load.STALL`` and seconds (``load.stall_jpeg``) sleeps that long: a
model that hangs, for deadlines and in-flight requests at shutdown.
"""

from __future__ import annotations

import os
import re
import time

from scoring_app import settings
from scoring_app.app import create_app
from scoring_app.model.savedmodel import ScoringModel
from tests.reliability.load import STALL

DELAY_S = float(os.environ.get("RELIABILITY_MODEL_DELAY_S", "0"))


def stall_seconds(items) -> float:
    found = [float(m.group(1)) for item in items if isinstance(item, bytes)
             for m in [re.search(re.escape(STALL) + rb"([0-9.]+);", item)] if m]
    return max(found, default=DELAY_S)


class SlowModel(ScoringModel):
    def predict(self, items):
        time.sleep(stall_seconds(items))
        return super().predict(items)


app = create_app(model=SlowModel(settings.load()))
