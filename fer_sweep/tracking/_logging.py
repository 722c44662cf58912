"""What a training run records in MLflow: every epoch, then the evaluation and the model files.

Default store (nothing to start by hand): MLflow on SQLite at ``mlruns/mlflow.db`` with
artifacts under ``mlruns/artifacts``; the settings (:mod:`fer_sweep.settings`) point
elsewhere, for instance at an MLflow tracking server shared by many workers.

:func:`tracked_train` trains inside a run that :func:`~._runs.open_run` opened: every
epoch's metrics under the names of :mod:`fer_sweep.metric_names`, then PrivateTest, the
confusion matrices, the curves and the model files. Every write goes through the run's
:meth:`~._runs.TrackedRun.safely`, so a tracking failure costs logging, never the result;
what is written during training goes through the run's background writer, so a slow
server never holds up an epoch. With a tracking server the checkpoints travel too
(:mod:`._checkpoints`).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from fer_sweep import metric_names as names
from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset
from fer_sweep.errors import TrainingInterrupted
from fer_sweep.fer2013 import EMOTIONS
from fer_sweep.settings import is_local
from fer_sweep.tracking._checkpoints import CheckpointUploader, fetch_checkpoint
from fer_sweep.tracking._notes import dataset_input
from fer_sweep.tracking._runs import TrackedRun
from fer_sweep.training import TrainResult, train

log = logging.getLogger(__name__)

# The local folder a run checkpoints into (a retry on the same machine continues there).
WORKDIR_TAG = "fer_sweep.workdir"
# What resuming passed over (an unreadable checkpoint), when it passed over anything.
CHECKPOINT_NOTE_TAG = "fer_sweep.checkpoint_note"


def config_from_run(client: MlflowClient, run_id: str) -> TrainConfig:
    """Rebuild the TrainConfig a run was started with (its params round-trip)."""
    from fer_sweep.config import make_config

    params = client.get_run(run_id).data.params
    values = {k: v for k, v in params.items() if k in TrainConfig.model_fields}
    return make_config(values, origin=f"run {run_id}")


# --- while training -----------------------------------------------------------------------


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics with ``step=epoch`` (1-based) under our names.

    The write goes through the run's background writer (:meth:`TrackedRun.later`), so the
    next epoch starts while it travels. A tracking store that fails mid-run must not stop
    the training: the run notes the failure (whatever its message, empty included) and the
    next epoch tries again.
    """

    def __init__(self, run: TrackedRun) -> None:
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        now = int(time.time() * 1000)
        values = names.from_keras(logs or {})
        # PublicTest first: a run lists its metrics in the order they were first logged, and
        # MLflow's compare view plots the first one by default (it would be train/accuracy).
        order = sorted(values, key=lambda k: k != names.PUBLIC_ACCURACY)  # stable: rest as is
        metrics = [Metric(k, values[k], now, epoch + 1) for k in order]
        self.run.later(
            f"epoch {epoch + 1}", self.run.client.log_batch, self.run.id, metrics=metrics
        )


# --- one tracked training run -------------------------------------------------------------


def tracked_train(
    config: TrainConfig,
    dataset: Dataset,
    *,
    run: TrackedRun,
    workdir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    stop_event: threading.Event | None = None,
    progress: bool = True,
    resume_run: str | None = None,
    trainer: Callable[..., TrainResult] = train,
) -> TrainResult:
    """Train ``config`` on ``dataset`` into the open ``run`` and log what it produced.

    Args:
        config: the run's config.
        dataset: the data (its hash and source are tagged on the run).
        run: the open run (:func:`fer_sweep.tracking.open_run`), which closes it.
        workdir: the local checkpoint folder; a checkpoint there is resumed.
        callbacks: more Keras callbacks (a sweep's pruning callback).
        stop_event: set it to stop after the current epoch, checkpointed
            (:class:`~fer_sweep.errors.TrainingInterrupted` is raised).
        progress: show a progress bar on the terminal.
        resume_run: an earlier attempt's run; with a tracking server, its uploaded
            checkpoint is fetched when ``workdir`` holds none.
        trainer: the training function (:func:`fer_sweep.training.train`).

    Exceptions from training go on their way (the run's ``with`` block closes it); tracking
    failures are noted on ``run`` and never raised.
    """
    remote = not is_local(run.client.tracking_uri)
    tags = {
        "fer_sweep.dataset_sha256": dataset.sha256,
        "fer_sweep.dataset_source": dataset.source,
        WORKDIR_TAG: str(workdir),
    }
    if resume_run:
        tags["fer_sweep.resumes_run"] = resume_run
        if remote:
            fetch_checkpoint(run.client, resume_run, workdir)
    run.set_tags(tags)
    run.safely(
        "dataset input", lambda: run.client.log_inputs(run.id, datasets=[dataset_input(dataset)])
    )
    uploader = CheckpointUploader(run, workdir, background=True) if remote else None
    bar = None
    if progress:
        from fer_sweep.training import EpochProgress

        n_train = config.subset or int((dataset.split == 0).sum())
        bar = EpochProgress(config.epochs, math.ceil(n_train / config.batch_size))
    extra = [cb for cb in (uploader, *callbacks, bar) if cb is not None]
    try:
        result = trainer(
            config,
            dataset,
            workdir=workdir,
            callbacks=[EpochLogger(run), *extra],
            stop_event=stop_event,
        )
    except TrainingInterrupted:
        if uploader is not None:
            uploader.upload()  # the checkpoint written on the way out
        raise
    finally:
        if bar is not None:
            bar.progress.stop()
    # The epochs' metrics and uploads first (an exception instead leaves it to the run's
    # close); what failed among them is noted on the run.
    run.flush()
    run.safely("final metrics and artifacts", log_result, run, result)
    return result


def final_metrics(result: TrainResult) -> dict[str, float]:
    """The once-per-run numbers of a finished run, under the names of metric_names."""
    out = {
        names.EPOCHS_TRAINED: result.epochs_trained,
        names.BEST_EPOCH: result.best_epoch,
        names.PUBLIC_BEST: result.best_val_accuracy,
        names.PUBLIC_FINAL: result.final_val_accuracy,
        names.PRIVATE_FINAL: result.test_final.accuracy,
        names.PRIVATE_AT_BEST: result.test_best.accuracy,
        names.FIT_SECONDS: result.fit_seconds,
        names.EVAL_SECONDS: result.eval_seconds,
    }
    for name, report in (
        (names.PRIVATE_FINAL_TENCROP, result.test_final_tencrop),
        (names.PRIVATE_AT_BEST_TENCROP, result.test_best_tencrop),
    ):
        if report is not None:
            out[name] = report.accuracy
    train_accuracy = result.history.get("accuracy")
    if train_accuracy:
        out[names.TRAIN_BEST] = max(train_accuracy)
    for which, report in (("final", result.test_final), ("at_best_epoch", result.test_best)):
        for emotion, acc in zip(EMOTIONS, report.per_class, strict=True):
            if acc is not None:  # a class the split lacks has no accuracy: no metric (n/a)
                out[names.per_class(which, emotion)] = acc
    return {k: float(v) for k, v in out.items()}


def log_result(run: TrackedRun, result: TrainResult) -> None:
    """Final metrics, the confusion matrices, learning curves and the model files of a run.

    Each part is written on its own, so one failure loses only that part.
    """
    from fer_sweep.tracking._plots import plot_confusion, plot_curves

    client, run_id = run.client, run.id
    # Step 0, not the last epoch: MLflow's UI charts a metric whose steps are all 0 as bars
    # comparing runs; at an epoch step each of these would be a one-dot "curve".
    now = int(time.time() * 1000)
    # With the accuracies' percent twins: what the runs table shows (metric_names).
    metrics = [Metric(k, v, now, 0) for k, v in names.with_percent(final_metrics(result)).items()]
    run.safely("final metrics", client.log_batch, run_id, metrics=metrics)
    tags = {"fer_sweep.resumed_from_epoch": str(result.resumed_from_epoch)}
    if result.checkpoint_note:  # an unreadable checkpoint was passed over when resuming
        tags[CHECKPOINT_NOTE_TAG] = result.checkpoint_note[:5000]
    run.set_tags(tags)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, report in (("final", result.test_final), ("best", result.test_best)):
            (out / f"confusion_{name}.json").write_text(
                json.dumps({"labels": list(EMOTIONS), **report.__dict__}, indent=1)
            )
            plot_confusion(report, out / f"confusion_{name}.png", title=f"PrivateTest, {name}")
        plot_curves(result.history, out / "learning_curves.png")
        (out / "history.json").write_text(json.dumps(result.history))
        run.safely("evaluation artifacts", client.log_artifacts, run_id, tmp, "evaluation")
    if result.private_at_epochs:
        at_epochs = [
            Metric(names.PRIVATE_AT_EPOCH, acc, now, epoch)
            for epoch, acc in sorted(result.private_at_epochs.items())
        ]
        run.safely("PrivateTest at report_epochs", client.log_batch, run_id, metrics=at_epochs)
    for artifact, local in result.files.items():
        folder, _, name = artifact.rpartition("/")
        if local.is_dir():
            run.safely(artifact, client.log_artifacts, run_id, str(local), artifact)
        elif local.exists():
            if local.name != name:
                raise ValueError(f"{artifact}: MLflow keeps the file name, got {local.name}")
            run.safely(artifact, client.log_artifact, run_id, str(local), folder or None)
