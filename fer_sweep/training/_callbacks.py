"""The trainer's own Keras callbacks: bookkeeping, a resumable plateau, report epochs, checkpoints.

Each keeps what a resume needs in the run's :class:`~fer_sweep.training._checkpoint.TrainingState`,
so that a run resumed after epoch ``k`` continues as the uninterrupted one would.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from fer_sweep.config import TrainConfig
from fer_sweep.errors import TrainingDiverged, TrainingInterrupted
from fer_sweep.model import bare_network
from fer_sweep.training._checkpoint import BEST_WEIGHTS, TrainingState, save_checkpoint
from fer_sweep.training._evaluation import split_report
from fer_sweep.training._pipeline import epoch_rng
from fer_sweep.training._schedules import current_learning_rate

# The dropout generators' random stream, beside pipeline.py's shuffle (0) and augment (1).
_DROPOUT = 2


def dropout_states(model: keras.Model) -> list:
    return [v for v in model.variables if v.name == "seed_generator_state"]


class Bookkeeping(keras.callbacks.Callback):
    """First callback: seeds the epoch's dropout, logs its learning rate, tracks the best."""

    def __init__(self, state: TrainingState, workdir: Path, config: TrainConfig) -> None:
        super().__init__()
        self.state = state
        self.workdir = workdir
        self.config = config
        self._lr = math.nan
        self._started = math.nan

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()
        # Dropout masks of epoch e depend on (seed, e) only, never on how many batches the
        # generators saw before: a resumed run draws the masks the uninterrupted one drew.
        states = dropout_states(self.model)
        rng = epoch_rng(self.config.seed, epoch, _DROPOUT)
        for v, key in zip(states, rng.integers(1, 2**31 - 1, len(states)), strict=True):
            v.assign(np.array([key, 0]).astype(v.dtype))
        self._lr = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["lr"] = self._lr
        logs["epoch_seconds"] = time.perf_counter() - self._started  # with validation
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            raise TrainingDiverged(f"training loss became {loss} in epoch {epoch + 1}")
        for key, value in logs.items():
            self.state.history.setdefault(key, []).append(float(value))
        self.state.epoch = epoch + 1
        val = float(logs.get("val_accuracy", -1.0))
        if val > self.state.best_val_accuracy:
            self.state.best_val_accuracy = val
            self.state.best_epoch = epoch + 1
            bare_network(self.model).save_weights(self.workdir / BEST_WEIGHTS)


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """Keras's ReduceLROnPlateau whose counters survive a checkpoint and resume.

    Keras resets ``wait``, ``best`` and ``cooldown_counter`` in ``on_train_begin``; a resumed
    run puts back the values the interrupted one had after its last epoch.
    """

    _KEYS = ("wait", "best", "cooldown_counter")

    def __init__(self, state: TrainingState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for key, value in self.state.plateau.items():
            setattr(self, key, value)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.state.plateau = {k: float(getattr(self, k)) for k in self._KEYS}


class ReportEpochs(keras.callbacks.Callback):
    """PrivateTest accuracy after each of ``report_epochs``, for the report only."""

    def __init__(self, state: TrainingState, config: TrainConfig, images, labels) -> None:
        super().__init__()
        self.state, self.epochs = state, set(config.report_epochs)
        self.images, self.labels = images, labels

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            report = split_report(bare_network(self.model), self.images, self.labels)
            self.state.private_at_epochs[str(epoch + 1)] = report.accuracy


class CheckpointAndStop(keras.callbacks.Callback):
    """Last callback: checkpoints on schedule, and stops cleanly when asked to."""

    def __init__(self, state, workdir, config, stop_event) -> None:
        super().__init__()
        self.state = state
        self.workdir = workdir
        self.config = config
        self.stop_event = stop_event

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        stopping = self.stop_event is not None and self.stop_event.is_set()
        if stopping or done % self.config.checkpoint_every == 0 or done == self.config.epochs:
            save_checkpoint(self.model, self.state, self.workdir, self.config)
        if stopping:
            raise TrainingInterrupted(done)
