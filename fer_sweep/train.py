"""One training run, as Section 5.2 describes it: load, build, compile, fit, evaluate.

The loop knows nothing about Optuna or MLflow: sweeps and tracking hand it Keras callbacks.
It checkpoints every ``checkpoint_every`` epochs (model, optimizer state, schedule position,
best-so-far weights and the metric history) into ``workdir/checkpoint``, and a later call
with the same ``workdir`` and config continues from there.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset, stratified_subset
from fer_sweep.errors import UserError
from fer_sweep.models import NUM_CLASSES, build_model
from fer_sweep.pipeline import eval_batches, train_batches
from fer_sweep.schedules import current_learning_rate, make_optimizer

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.keras"
BEST_WEIGHTS = "best.weights.h5"
STATE_FILE = "state.json"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """A stop was requested; the run was checkpointed at the end of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"stopped on request after epoch {epoch}")
        self.epoch = epoch


@dataclass
class SplitReport:
    """Accuracy on one split, with per-class accuracy and the confusion matrix (rows = truth)."""

    accuracy: float
    per_class: list[float]
    confusion: list[list[int]]


@dataclass
class TrainResult:
    config: TrainConfig
    epochs_trained: int
    history: dict[str, list[float]]
    best_epoch: int
    best_val_accuracy: float
    final_val_accuracy: float
    test_final: SplitReport  # PrivateTest, final weights
    test_best: SplitReport  # PrivateTest, weights of the best-PublicTest epoch
    resumed_from_epoch: int
    fit_seconds: float
    eval_seconds: float
    workdir: Path
    extra: dict = field(default_factory=dict)


def split_report(model: keras.Model, images: np.ndarray, labels: np.ndarray, config) -> SplitReport:
    probs = model.predict(eval_batches(images, labels, config), verbose=0)
    pred = np.argmax(probs, axis=1)
    confusion = np.bincount(
        labels.astype(np.int64) * NUM_CLASSES + pred, minlength=NUM_CLASSES * NUM_CLASSES
    ).reshape(NUM_CLASSES, NUM_CLASSES)
    totals = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), totals, out=np.zeros(NUM_CLASSES), where=totals > 0)
    return SplitReport(
        accuracy=float(np.trace(confusion) / max(1, confusion.sum())),
        per_class=[float(v) for v in per_class],
        confusion=confusion.tolist(),
    )


@dataclass
class _State:
    """What a checkpoint must remember besides the model: where we are and the best so far."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    history: dict[str, list[float]] = field(default_factory=dict)


class _Bookkeeping(keras.callbacks.Callback):
    """First callback: puts the epoch's learning rate in the logs, tracks the best epoch."""

    def __init__(self, state: _State, workdir: Path) -> None:
        super().__init__()
        self.state = state
        self.workdir = workdir
        self._lr = math.nan

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = current_learning_rate(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["lr"] = self._lr
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
            self.model.save_weights(self.workdir / BEST_WEIGHTS)


class _CheckpointAndStop(keras.callbacks.Callback):
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


def save_checkpoint(model: keras.Model, state: _State, workdir: Path, config: TrainConfig) -> None:
    """Write the checkpoint folder whole, then swap it in, so a kill never leaves half of one."""
    tmp = workdir / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / MODEL_FILE)
    if (workdir / BEST_WEIGHTS).exists():
        shutil.copy2(workdir / BEST_WEIGHTS, tmp / BEST_WEIGHTS)
    payload = {"state": asdict(state), "config": config.model_dump(mode="json")}
    (tmp / STATE_FILE).write_text(json.dumps(payload))
    final = workdir / CHECKPOINT_DIR
    old = workdir / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_epoch(workdir: Path) -> int:
    """Epochs done according to the checkpoint in ``workdir`` (0 when there is none)."""
    path = Path(workdir) / CHECKPOINT_DIR / STATE_FILE
    if not path.exists():
        return 0
    return int(json.loads(path.read_text())["state"]["epoch"])


def _restore(workdir: Path, config: TrainConfig) -> tuple[keras.Model, _State] | None:
    ckpt = workdir / CHECKPOINT_DIR
    if not (ckpt / STATE_FILE).exists():
        # A kill during the swap leaves only the previous checkpoint, under its .old name.
        if (workdir / (CHECKPOINT_DIR + ".old") / STATE_FILE).exists():
            (workdir / (CHECKPOINT_DIR + ".old")).rename(ckpt)
        else:
            return None
    payload = json.loads((ckpt / STATE_FILE).read_text())
    saved = TrainConfig(**payload["config"])
    if saved != config:
        changed = sorted(k for k, v in config.model_dump().items() if saved.model_dump()[k] != v)
        raise UserError(
            f"{ckpt} holds a run with a different config ({', '.join(changed)} differ); "
            "resume with the same config or use a new work dir"
        )
    model = keras.models.load_model(ckpt / MODEL_FILE)
    if (ckpt / BEST_WEIGHTS).exists():
        shutil.copy2(ckpt / BEST_WEIGHTS, workdir / BEST_WEIGHTS)
    return model, _State(**payload["state"])


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        # Sparse labels: the same categorical cross-entropy without one-hot tensors.
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # XLA was measured slower for this network on the 2-core CPU (see the benchmark).
        jit_compile=False,
    )


def train(
    config: TrainConfig,
    dataset: Dataset,
    *,
    workdir: str | Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Train ``config`` on ``dataset`` (PublicTest for selection, PrivateTest at the end only).

    Raises :class:`TrainingDiverged` on a non-finite loss and :class:`TrainingInterrupted`
    after checkpointing when ``stop_event`` is set; exceptions from ``callbacks`` (such as a
    pruner's) propagate.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    keras.utils.clear_session(free_memory=True)
    keras.config.set_dtype_policy(config.precision)
    keras.utils.set_random_seed(config.seed)

    data = stratified_subset(dataset, config.subset, seed=config.seed) if config.subset else dataset
    x_train, y_train = data.arrays("Training")
    x_val, y_val = data.arrays("PublicTest")
    x_test, y_test = data.arrays("PrivateTest")
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)

    restored = _restore(workdir, config)
    if restored is None:
        model = build_model(config)
        compile_model(model, config, steps_per_epoch)
        state = _State()
    else:
        model, state = restored
    resumed_from = state.epoch
    schedule_callbacks = []
    if config.schedule == "reduce_on_plateau":
        schedule_callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss",
                factor=config.step_factor,
                patience=config.plateau_patience,
                min_lr=config.min_lr,
            )
        )

    fit_start = time.perf_counter()
    if state.epoch < config.epochs:
        model.fit(
            train_batches(x_train, y_train, config),
            validation_data=eval_batches(x_val, y_val, config),
            epochs=config.epochs,
            initial_epoch=state.epoch,
            shuffle=False,  # the pipeline reshuffles every epoch from the seed
            verbose=0,
            callbacks=[
                _Bookkeeping(state, workdir),
                *schedule_callbacks,
                *callbacks,
                _CheckpointAndStop(state, workdir, config, stop_event),
            ],
        )
    fit_seconds = time.perf_counter() - fit_start

    eval_start = time.perf_counter()
    model.save(workdir / "final.keras")
    test_final = split_report(model, x_test, y_test, config)
    if (workdir / BEST_WEIGHTS).exists():
        model.load_weights(workdir / BEST_WEIGHTS)
    test_best = split_report(model, x_test, y_test, config)
    eval_seconds = time.perf_counter() - eval_start

    return TrainResult(
        config=config,
        epochs_trained=state.epoch,
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        final_val_accuracy=state.history.get("val_accuracy", [math.nan])[-1],
        test_final=test_final,
        test_best=test_best,
        resumed_from_epoch=resumed_from,
        fit_seconds=fit_seconds,
        eval_seconds=eval_seconds,
        workdir=workdir,
    )
