"""One training run, as Section 5.2 describes it: load, build, compile, fit, evaluate.

The loop knows nothing about Optuna or MLflow: sweeps and tracking hand it Keras callbacks.
It runs on any Keras 3 backend. The network of Tables 5.1-5.3 (``build_model``) is wrapped
in a training model that first warps each batch by the augmentation's affine maps
(:mod:`fer_sweep.model._augment`); evaluation and the saved models use the bare network.

Randomness is keyed by ``(seed, epoch)``: the shuffle order and augmentation draws
(:mod:`fer_sweep.training._pipeline`) and the dropout generators, reset at the start of every epoch.
With the checkpoint (model, optimizer state, schedule position, plateau state, best-so-far
weights, history) written every ``checkpoint_every`` epochs into ``workdir/checkpoint``, a
run resumed after epoch ``k`` trains epoch ``k + 1`` exactly as the uninterrupted run would
(up to CPU kernels that are not bitwise deterministic).
"""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset, require_splits, stratified_subset
from fer_sweep.model import bare_network, build_model, training_model
from fer_sweep.training import predictions
from fer_sweep.training._callbacks import (
    Bookkeeping,
    CheckpointAndStop,
    ReportEpochs,
    ResumablePlateau,
)
from fer_sweep.training._checkpoint import (
    BEST_WEIGHTS,
    FINAL_MODEL,
    TrainingState,
    checkpoint_path,
    restore_checkpoint,
)
from fer_sweep.training._evaluation import SplitReport, report_of
from fer_sweep.training._pipeline import (
    EpochBatches,
    eval_inputs,
    soft_targets,
    targets,
    training_input,
)
from fer_sweep.training._schedules import make_optimizer


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
    # A network that sees a centre crop: PrivateTest averaged over its ten crops (TenCrop).
    test_final_tencrop: SplitReport | None = None
    test_best_tencrop: SplitReport | None = None


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
    if soft_targets(config):
        # One-hot rows (mixed or smoothed labels): the categorical loss smooths them itself.
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    else:
        # Sparse labels: the same categorical cross-entropy without one-hot tensors.
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=loss,
        metrics=metrics,
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

    model, state, checkpoint_note = restore_checkpoint(workdir, config)
    if checkpoint_note:
        print(f"warning: {workdir}: {checkpoint_note}", file=sys.stderr)
    if model is None:
        model = training_model(build_model(config), config)
        compile_model(model, config, steps_per_epoch)
        state = TrainingState()
    resumed_from = state.epoch
    extra_callbacks: list[keras.callbacks.Callback] = []
    if config.schedule == "reduce_on_plateau":
        extra_callbacks.append(
            ResumablePlateau(
                state,
                monitor=config.plateau_monitor,
                factor=config.step_factor,
                patience=config.plateau_patience,
                min_lr=config.min_lr,
            )
        )
    if config.report_epochs:
        extra_callbacks.append(ReportEpochs(state, config, x_test, y_test))

    fit_start = time.perf_counter()
    if state.epoch < config.epochs:
        batches = EpochBatches(x_train, y_train, config, start_epoch=state.epoch)
        model.fit(
            training_input(batches),
            steps_per_epoch=batches.steps_per_epoch,
            validation_data=(eval_inputs(x_val, config), targets(y_val, config)),
            validation_batch_size=256,
            epochs=config.epochs,
            initial_epoch=state.epoch,
            shuffle=False,  # the batches come in each epoch's own seeded order
            verbose=0,
            callbacks=[
                Bookkeeping(state, workdir, config),
                *extra_callbacks,
                *callbacks,
                CheckpointAndStop(state, workdir, config, stop_event),
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
    # A network trained on crops is also scored on its ten crops (the published recipes'
    # test-time averaging); the plain numbers stay the ones every run reports.
    scored = predictions.score_models({"final": net, "best": best_weights}, data, crop=config.crop)
    private = scored.split("PrivateTest")
    test_final = report_of(y_test, private.pred["final"])
    test_best = report_of(y_test, private.pred["best"])
    tencrop = {
        w: report_of(y_test, private.pred[w + predictions.TEN_CROP])
        for w in ("final", "best")
        if w + predictions.TEN_CROP in private.pred
    }
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
        test_final_tencrop=tencrop.get("final"),
        test_best_tencrop=tencrop.get("best"),
    )
