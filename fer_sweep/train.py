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
from fer_sweep.data import Dataset, stratified_subset
from fer_sweep.errors import UserError
from fer_sweep.models import INPUT_SHAPE, NUM_CLASSES, build_model
from fer_sweep.pipeline import EpochBatches, epoch_rng, eval_inputs, training_input
from fer_sweep.schedules import current_learning_rate, make_optimizer

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.keras"
BEST_WEIGHTS = "best.weights.h5"
FINAL_MODEL = "final.keras"
STATE_FILE = "state.json"
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
    per_class: list[float]
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


def checkpoint_path(workdir: Path) -> Path:
    """The folder holding ``workdir``'s checkpoint (model, optimizer, state), whole or absent."""
    return Path(workdir) / CHECKPOINT_DIR


def checkpoint_epoch(workdir: Path) -> int:
    """Epochs done according to the checkpoint in ``workdir`` (0 when there is none)."""
    path = checkpoint_path(workdir) / STATE_FILE
    if not path.exists():
        return 0
    return int(json.loads(path.read_text())["state"]["epoch"])


def _restore(workdir: Path, config: TrainConfig) -> tuple[keras.Model, _State] | None:
    ckpt = checkpoint_path(workdir)
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

    data = stratified_subset(dataset, config.subset, seed=config.seed) if config.subset else dataset
    x_train, y_train = data.arrays("Training")
    x_val, y_val = data.arrays("PublicTest")
    x_test, y_test = data.arrays("PrivateTest")
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)

    restored = _restore(workdir, config)
    if restored is None:
        model = training_model(build_model(config), config)
        compile_model(model, config, steps_per_epoch)
        state = _State()
    else:
        model, state = restored
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
            )  # fmt: skip
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
    )
