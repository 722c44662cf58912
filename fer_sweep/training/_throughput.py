"""The trainer's steady-state training speed, measured on the model and input a trial builds.

The forecast's short fit (:func:`fer_sweep.lifecycle.measure_pace`) and the benchmarks
(``python -m benchmarks``) both time training this way, so the pace a forecast starts from is
the one the benchmark reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras

from fer_sweep.config import TrainConfig
from fer_sweep.model import build_model

__all__ = ["BatchClock", "project_fitter"]


class BatchClock(keras.callbacks.Callback):
    """Timestamps of batch ends; the rate counts only batches after ``skip`` (tracing and
    warm-up are not the steady state)."""

    def __init__(self, batch_size: int, skip: int) -> None:
        super().__init__()
        self.batch_size, self.skip = batch_size, skip
        self.marks: list[tuple[int, float]] = []

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append((batch, time.perf_counter()))

    def rate(self) -> float:
        kept = [m for m in self.marks if m[0] >= self.skip] or self.marks
        (b0, t0), (b1, t1) = kept[0], kept[-1]
        return (b1 - b0) * self.batch_size / (t1 - t0) if t1 > t0 else math.nan


def project_fitter(
    config: TrainConfig, x_train, y_train, *, steps_per_epoch: int
) -> tuple[Callable[[int, int], float], keras.Model]:
    """The trainer's model and input as a trial builds them (its schedule as over
    ``steps_per_epoch`` batches an epoch); ``fit(steps, skip)`` -> images/s."""
    from fer_sweep.model import training_model
    from fer_sweep.training._pipeline import EpochBatches, training_input
    from fer_sweep.training._trainer import compile_model

    keras.config.set_dtype_policy(config.precision)
    model = training_model(build_model(config), config)
    compile_model(model, config, steps_per_epoch)
    keras.config.set_dtype_policy("float32")
    data = training_input(EpochBatches(x_train, y_train, config, start_epoch=0))

    def fit(steps: int, skip: int) -> float:
        clock = BatchClock(config.batch_size, skip)
        # shuffle=False: the batches come in their own seeded order, as in train.
        model.fit(
            data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[clock], shuffle=False
        )
        return clock.rate()

    return fit, model
