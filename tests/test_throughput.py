"""The short fit the forecast measures a pace with, on the real trainer (a few seconds)."""

from __future__ import annotations

import math

from fer_sweep.config import load_config
from fer_sweep.lifecycle import measure_pace
from fer_sweep.lifecycle._forecast import MEASURE_BATCHES, MEASURE_SKIP


def test_the_short_fit_times_the_real_trainer_and_says_how():
    # Other tests switch measuring off (FER_SWEEP_MEASURE_PACE=off), so this is the one that
    # proves the measurement itself still builds and fits the trial's model.
    config = load_config(arch="A", batch_size=8, augment=True)
    pace = measure_pace(config)
    assert math.isfinite(pace.seconds_per_image) and 0 < pace.seconds_per_image < 1
    timed = MEASURE_BATCHES - MEASURE_SKIP - 1
    assert pace.how == f"{timed} batches of a short fit"
