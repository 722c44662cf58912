"""One training run, as Section 5.2 describes it: load, build, compile, fit, evaluate.

The loop knows nothing about Optuna or MLflow: sweeps and tracking hand it Keras callbacks.
It runs on any Keras 3 backend. The network of Tables 5.1-5.3 (``build_model``) is wrapped
in a training model that first warps each batch by the augmentation's affine maps
(:mod:`fer_sweep.augment`); evaluation and the saved models use the bare network.

Randomness is keyed by ``(seed, epoch)``: the shuffle order and augmentation draws
(:mod:`fer_sweep.pipeline`) and the dropout generators, reset at the start of every epoch.
With the checkpoint (model, optimizer state, schedule position, plateau state, best-so-far
weights, history) written every ``checkpoint_every`` epochs into ``workdir/checkpoint``, a
run resumed after epoch ``k`` trains epoch ``k + 1`` exactly as the uninterrupted run would
(up to CPU kernels that are not bitwise deterministic).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from fer_sweep import predictions
from fer_sweep.augment import AffineAugment, augments
from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset, require_splits, stratified_subset
from fer_sweep.errors import UserError, first_line
from fer_sweep.models import INPUT_SHAPE, NUM_CLASSES, build_model
from fer_sweep.pipeline import EpochBatches, epoch_rng, eval_inputs, training_input
from fer_sweep.schedules import current_learning_rate, make_optimizer

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.keras"
BEST_WEIGHTS = "best.weights.h5"
FINAL_MODEL = "final.keras"
STATE_FILE = "state.json"
# Beside CHECKPOINT_DIR: the checkpoint it replaced (whole), where a damaged one is set aside,
# and the name the replaced one had only while being swapped before this layout.
PREVIOUS_DIR = CHECKPOINT_DIR + ".prev"
DAMAGED_DIR = CHECKPOINT_DIR + ".damaged"
LEGACY_OLD_DIR = CHECKPOINT_DIR + ".old"
# The dropout generators' random stream, beside pipeline.py's shuffle (0) and augment (1).
_DROPOUT = 2


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
    per_class: list[float | None]  # None: the split has no image of that class (n/a)
    confusion: list[list[int]]


@dataclass
class TrainResult:
    """What a finished run produced. ``files`` maps a name for each file the run wrote (its
    place under the run's artifacts) to the local path, so trackers need no file names."""

    config: TrainConfig
    epochs_trained: int
    history: dict[str, list[float]]  # Keras's names: loss, accuracy, val_*, lr, epoch_seconds
    best_epoch: int
    best_val_accuracy: float
    final_val_accuracy: float
    test_final: SplitReport  # PrivateTest, final weights
    test_best: SplitReport  # PrivateTest, weights of the best-PublicTest epoch
    resumed_from_epoch: int
    fit_seconds: float
    eval_seconds: float
    workdir: Path
    private_at_epochs: dict[int, float] = field(default_factory=dict)  # report_epochs
    files: dict[str, Path] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    checkpoint_note: str = ""  # what resuming passed over: an unreadable checkpoint


def split_report(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> SplitReport:
    """Accuracy of the bare network ``model`` on one split (raw 0-255 images)."""
    x = images.reshape(-1, *INPUT_SHAPE).astype("float32")
    return report_of(labels, np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1))


def report_of(labels: np.ndarray, pred: np.ndarray) -> SplitReport:
    """Accuracy, per-class accuracy and confusion matrix of predicted classes ``pred``."""
    confusion = np.bincount(
        labels.astype(np.int64) * NUM_CLASSES + pred, minlength=NUM_CLASSES * NUM_CLASSES
    ).reshape(NUM_CLASSES, NUM_CLASSES)
    totals = confusion.sum(axis=1)
    per_class = [
        float(hit / n) if n else None for hit, n in zip(np.diag(confusion), totals, strict=True)
    ]
    return SplitReport(
        accuracy=float(np.trace(confusion) / max(1, confusion.sum())),
        per_class=per_class,
        confusion=confusion.tolist(),
    )


@dataclass
class _State:
    """What a checkpoint must remember besides the model: where we are and the best so far."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    history: dict[str, list[float]] = field(default_factory=dict)
    plateau: dict[str, float] = field(default_factory=dict)  # ReduceLROnPlateau's counters
    private_at_epochs: dict[str, float] = field(default_factory=dict)  # JSON keys: str


def training_model(net: keras.Model, config: TrainConfig) -> keras.Model:
    """``net`` behind the augmentation warp: inputs ``image`` (uint8) and ``affine``."""
    image = keras.Input(INPUT_SHAPE, dtype="uint8", name="image")
    affine = keras.Input((6,), name="affine")
    x = AffineAugment(config.fill_mode, enabled=augments(config), name="augment")(image, affine)
    return keras.Model({"image": image, "affine": affine}, net(x), name=f"train_{net.name}")


def bare_network(model: keras.Model) -> keras.Model:
    """The thesis network inside a training model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def _dropout_states(model: keras.Model) -> list:
    return [v for v in model.variables if v.name == "seed_generator_state"]


class _Bookkeeping(keras.callbacks.Callback):
    """First callback: seeds the epoch's dropout, logs its learning rate, tracks the best."""

    def __init__(self, state: _State, workdir: Path, config: TrainConfig) -> None:
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
        states = _dropout_states(self.model)
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


class _Plateau(keras.callbacks.ReduceLROnPlateau):
    """Keras's ReduceLROnPlateau whose counters survive a checkpoint and resume.

    Keras resets ``wait``, ``best`` and ``cooldown_counter`` in ``on_train_begin``; a resumed
    run puts back the values the interrupted one had after its last epoch.
    """

    _KEYS = ("wait", "best", "cooldown_counter")

    def __init__(self, state: _State, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for key, value in self.state.plateau.items():
            setattr(self, key, value)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.state.plateau = {k: float(getattr(self, k)) for k in self._KEYS}


class _ReportEpochs(keras.callbacks.Callback):
    """PrivateTest accuracy after each of ``report_epochs``, for the report only."""

    def __init__(self, state: _State, config: TrainConfig, images, labels) -> None:
        super().__init__()
        self.state, self.epochs = state, set(config.report_epochs)
        self.images, self.labels = images, labels

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            report = split_report(bare_network(self.model), self.images, self.labels)
            self.state.private_at_epochs[str(epoch + 1)] = report.accuracy


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
    """Write the checkpoint folder whole, check it reads back, then swap it in.

    The checkpoint it replaces stays, whole, as ``checkpoint.prev``, so a checkpoint damaged
    later (a truncated copy, a bad disk) still leaves one to resume from; a write that fails
    (a full disk) removes its partial folder and leaves both in place.
    """
    tmp = workdir / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        model.save(tmp / MODEL_FILE)
        if (workdir / BEST_WEIGHTS).exists():
            shutil.copy2(workdir / BEST_WEIGHTS, tmp / BEST_WEIGHTS)
        payload = {"state": asdict(state), "config": config.model_dump(mode="json")}
        (tmp / STATE_FILE).write_text(json.dumps(payload))
        _check_readable(tmp)
    except BaseException:
        shutil.rmtree(
            tmp, ignore_errors=True
        )  # a partial folder also holds space a full disk needs
        raise
    final, previous = workdir / CHECKPOINT_DIR, workdir / PREVIOUS_DIR
    shutil.rmtree(workdir / LEGACY_OLD_DIR, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    tmp.rename(final)


def checkpoint_path(workdir: Path) -> Path:
    """The folder holding ``workdir``'s newest checkpoint (model, optimizer, state)."""
    return Path(workdir) / CHECKPOINT_DIR


def _candidates(workdir: Path) -> list[Path]:
    """Checkpoint folders to resume from, newest first: the current one, the one it replaced,
    and the name an earlier version gave the replaced one while swapping (``.old``)."""
    return [Path(workdir) / d for d in (CHECKPOINT_DIR, PREVIOUS_DIR, LEGACY_OLD_DIR)]


def _read_state(folder: Path) -> dict:
    """The payload of ``folder``'s state.json, or :class:`CheckpointUnreadable`."""
    path = folder / STATE_FILE
    try:
        payload = json.loads(path.read_text())
        int(payload["state"]["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointUnreadable(f"{path}: {first_line(err) or type(err).__name__}") from None
    return payload


def _check_readable(folder: Path) -> None:
    """The cheap part of reading a checkpoint back: its state parses and the model archive's
    every member has the CRC it was written with (a truncated file fails here)."""
    import zipfile

    _read_state(folder)
    path = folder / MODEL_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as err:
        raise CheckpointUnreadable(f"{path}: {first_line(err)}") from None
    if bad is not None:
        raise CheckpointUnreadable(f"{path}: {bad} is damaged")


def checkpoint_epoch(workdir: Path) -> int:
    """Epochs done according to the newest readable checkpoint in ``workdir`` (0: none)."""
    for folder in _candidates(workdir):
        try:
            return int(_read_state(folder)["state"]["epoch"])
        except CheckpointUnreadable:
            continue
    return 0


class CheckpointUnreadable(Exception):
    """A checkpoint folder that cannot be resumed from (the message names the file)."""


def _restore(workdir: Path, config: TrainConfig) -> tuple[keras.Model | None, _State | None, str]:
    """The model and state of the newest readable checkpoint (None, None: there is none) and
    a line saying which unreadable ones were passed over (empty when none was)."""
    skipped: list[str] = []
    for folder in _candidates(workdir):
        if not folder.exists():
            continue
        try:
            payload = _read_state(folder)
        except CheckpointUnreadable as err:
            skipped.append(first_line(err))
            continue
        try:
            saved = TrainConfig(**payload["config"])
        except (KeyError, ValueError, TypeError) as err:
            skipped.append(f"{folder / STATE_FILE}: no valid config ({first_line(err)})")
            continue
        if saved != config:
            changed = sorted(
                k for k, v in config.model_dump().items() if saved.model_dump()[k] != v
            )
            raise UserError(
                f"{folder} holds a run with a different config ({', '.join(changed)} differ); "
                "resume with the same config or use a new work dir"
            )
        try:
            _check_readable(folder)
            model = keras.models.load_model(folder / MODEL_FILE)
        except CheckpointUnreadable as err:  # its message names the file
            skipped.append(str(err))
            continue
        except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad archive
            skipped.append(f"{folder / MODEL_FILE}: {first_line(err)}")
            continue
        if (folder / BEST_WEIGHTS).exists():
            shutil.copy2(folder / BEST_WEIGHTS, workdir / BEST_WEIGHTS)
        state = _State(**payload["state"])
        note = ""
        if skipped:
            note = (
                f"resumed from the checkpoint after epoch {state.epoch} in {folder.name}/; "
                f"passed over the unreadable {'; '.join(skipped)}"
            )
        if folder.name != CHECKPOINT_DIR:
            # The newest readable one becomes the current one; a damaged one is set aside.
            damaged = workdir / DAMAGED_DIR
            shutil.rmtree(damaged, ignore_errors=True)
            if checkpoint_path(workdir).exists():
                checkpoint_path(workdir).rename(damaged)
            folder.rename(checkpoint_path(workdir))
        return model, state, note
    if not skipped:
        return None, None, ""
    (workdir / BEST_WEIGHTS).unlink(missing_ok=True)  # it belonged to the unreadable run
    return (
        None,
        None,
        (
            f"no readable checkpoint, starting from epoch 1; passed over the "
            f"unreadable {'; '.join(skipped)}"
        ),
    )


def _seed_initializers(seed: int) -> None:
    """Seed what draws the initial weights and the dropout generators' first seeds.

    ``keras.utils.set_random_seed`` seeds TensorFlow whenever it is installed, importing it
    under any backend; only the TensorFlow backend gets it here.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        # Sparse labels: the same categorical cross-entropy without one-hot tensors.
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # XLA was measured slower for this network on the 2-core CPU with TensorFlow (see the
        # benchmark); JAX always compiles, and "auto" lets every other backend choose.
        jit_compile=False if keras.backend.backend() == "tensorflow" else "auto",
    )


def training_data(config: TrainConfig, dataset: Dataset) -> Dataset:
    """The images ``config`` trains and is scored on: its subset (drawn with its
    :attr:`~fer_sweep.config.TrainConfig.data_seed`), or all of ``dataset``."""
    if not config.subset:
        return dataset
    return stratified_subset(dataset, config.subset, seed=config.data_seed)


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
    keras.utils.clear_session(free_memory=True)  # also drops Keras's global seed generator
    keras.config.set_dtype_policy(config.precision)
    _seed_initializers(config.seed)

    data = training_data(config, dataset)
    require_splits(data)  # an empty split would train on nothing or fail inside Keras
    x_train, y_train = data.arrays("Training")
    x_val, y_val = data.arrays("PublicTest")
    x_test, y_test = data.arrays("PrivateTest")
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)

    model, state, checkpoint_note = _restore(workdir, config)
    if checkpoint_note:
        print(f"warning: {workdir}: {checkpoint_note}", file=sys.stderr)
    if model is None:
        model = training_model(build_model(config), config)
        compile_model(model, config, steps_per_epoch)
        state = _State()
    resumed_from = state.epoch
    extra_callbacks: list[keras.callbacks.Callback] = []
    if config.schedule == "reduce_on_plateau":
        extra_callbacks.append(
            _Plateau(
                state,
                monitor="val_loss",
                factor=config.step_factor,
                patience=config.plateau_patience,
                min_lr=config.min_lr,
            )
        )
    if config.report_epochs:
        extra_callbacks.append(_ReportEpochs(state, config, x_test, y_test))

    fit_start = time.perf_counter()
    if state.epoch < config.epochs:
        batches = EpochBatches(x_train, y_train, config, start_epoch=state.epoch)
        model.fit(
            training_input(batches),
            steps_per_epoch=batches.steps_per_epoch,
            validation_data=(eval_inputs(x_val), y_val.astype("int32")),
            validation_batch_size=256,
            epochs=config.epochs,
            initial_epoch=state.epoch,
            shuffle=False,  # the batches come in each epoch's own seeded order
            verbose=0,
            callbacks=[
                _Bookkeeping(state, workdir, config),
                *extra_callbacks,
                *callbacks,
                _CheckpointAndStop(state, workdir, config, stop_event),
            ],
        )
    fit_seconds = time.perf_counter() - fit_start

    eval_start = time.perf_counter()
    net = bare_network(model)
    net.save(workdir / FINAL_MODEL)

    def best_weights() -> keras.Model:
        if (workdir / BEST_WEIGHTS).exists():
            net.load_weights(workdir / BEST_WEIGHTS)
        return net

    # Both test splits per image, final weights then the best epoch's (PrivateTest's accuracy
    # is read from the same predictions).
    scored = predictions.score_models({"final": net, "best": best_weights}, data)
    private = scored.split("PrivateTest")
    test_final = report_of(y_test, private.pred["final"])
    test_best = report_of(y_test, private.pred["best"])
    predictions.save(scored, workdir / predictions.FILE)
    eval_seconds = time.perf_counter() - eval_start

    files = {
        f"model/{FINAL_MODEL}": workdir / FINAL_MODEL,
        predictions.ARTIFACT: workdir / predictions.FILE,
    }
    if (workdir / BEST_WEIGHTS).exists():
        files[f"model/{BEST_WEIGHTS}"] = workdir / BEST_WEIGHTS
    if checkpoint_path(workdir).exists():  # model, optimizer and state: a run can go on
        files["checkpoints/last"] = checkpoint_path(workdir)
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
        private_at_epochs={int(k): v for k, v in state.private_at_epochs.items()},
        files=files,
        checkpoint_note=checkpoint_note,
    )
