"""A sweep trial's attempt for real: an MLflow run nested under the study's, and training.

:class:`TrainingRunner` is the :class:`~fer_sweep.worker.Runner` that ``fer_sweep sweep``
and ``fer_sweep worker`` use. It turns what happened into an
:class:`~fer_sweep.worker.AttemptReport` (the worker decides what follows) and records the
results under the names of :mod:`fer_sweep.metric_names`. :func:`open_worker` puts it
behind a :class:`~fer_sweep.worker.Worker`, so the worker's decisions never import the
trainer.
"""

from __future__ import annotations

import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import keras
import optuna
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import describe
from fer_sweep import metric_names as names
from fer_sweep.data import Dataset, load_dataset, require_splits
from fer_sweep.errors import disk_full, first_line
from fer_sweep.forecast import PaceCache, pace_key, training_images
from fer_sweep.progress import EPOCH_PROGRESS, EPOCH_SECONDS, TrialProgress
from fer_sweep.runs import (
    Outcome,
    close_abandoned,
    log_study_summary,
    open_run,
    outcome_of,
    set_study_run_status,
    study_run,
    study_run_status,
)
from fer_sweep.settings import Settings
from fer_sweep.storage import load_study, open_storage
from fer_sweep.study import RUN_ID, STOPPED_AFTER_EPOCH, plan_of, root_of, summarize, work_folder
from fer_sweep.tracking import WORKDIR_TAG, connect, final_metrics, tracked_train
from fer_sweep.train import checkpoint_epoch
from fer_sweep.worker import Attempt, AttemptReport, Runner, Worker, load_for_worker

# What a complete attempt records on its Optuna trial (besides outcome and reason).
RESUMED_FROM_EPOCH = "resumed_from_epoch"
MLFLOW_ERRORS = "mlflow_errors"


class PruningCallback(keras.callbacks.Callback):
    """Reports PublicTest accuracy to Optuna every epoch and stops the trial when told to."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch, logs=None):
        value = names.from_keras(logs or {}).get(names.PUBLIC_ACCURACY, 0.0)
        self.trial.report(value, step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (PublicTest {value:.4f})")


class TrainingRunner(Runner):
    """Trains each attempt inside its own MLflow run, nested under the study's run.

    Args:
        study_name: the study (and the MLflow experiment).
        settings: where runs, checkpoints and artifacts go.
        client: the MLflow client.
        dataset: the data every trial trains on.
        stop_event: set to stop the running attempt after its epoch.
        parent_run_id: the study's MLflow run.
        source: the command that runs the study (the runs' Source column).
        epoch_lines: print one line per finished epoch (where no live view shows them: a
            log file, ``nohup``, a worker process).
    """

    def __init__(
        self,
        study_name: str,
        settings: Settings,
        client,
        dataset: Dataset,
        stop_event: threading.Event,
        parent_run_id: str,
        source: str = "",
        epoch_lines: bool = True,
    ) -> None:
        self.epoch_lines = epoch_lines
        self.source = source or f"fer_sweep worker --study {study_name}"
        self.study_name = study_name
        self.settings = settings
        self.client = client
        self.dataset = dataset
        self.stop_event = stop_event
        self.parent_run_id = parent_run_id
        self.study: optuna.Study | None = None  # set by open(); names the work folders

    @classmethod
    def open(
        cls,
        study: optuna.Study,
        settings: Settings,
        *,
        data: str | None,
        stop_event: threading.Event,
        epoch_lines: bool = True,
    ) -> TrainingRunner:
        """Connect to MLflow, load the data and reopen the study's run (RUNNING)."""
        # Data that cannot train is refused before MLflow is touched.
        dataset = require_splits(load_dataset(data, cache_dir=settings.cache_dir))
        client = connect(settings.tracking_uri)
        parent = study_run(client, study, settings.artifact_root)
        set_study_run_status(client, parent, "RUNNING")
        try:  # the study's dataset is its trials' (MLflow keeps one input per run and dataset)
            client.log_inputs(parent, datasets=[describe.dataset_input(dataset)])
        except Exception as err:  # noqa: BLE001 - bookkeeping; the trials go ahead regardless
            print(f"warning: could not record the study's dataset: {first_line(err)}",
                  file=sys.stderr)  # fmt: skip
        source = describe.sweep_command(study.user_attrs.get("spec_name", study.study_name),
                                        study.user_attrs.get("budget"))  # fmt: skip
        runner = cls(study.study_name, settings, client, dataset, stop_event, parent, source,
                     epoch_lines=epoch_lines)  # fmt: skip
        runner.study = study
        return runner

    def workdir(self, attempt: Attempt) -> Path:
        """The lineage's work folder, unique to its study (see :func:`study.work_folder`).

        A retry continues where its lineage's latest run checkpointed (its
        ``fer_sweep.workdir`` tag), so a trial interrupted under an earlier layout still
        resumes."""
        if self.study is None:  # a runner made without open(): the study's name alone
            return self.settings.workdir(f"{attempt.study}/trial-{attempt.root:04d}")
        folder = self.settings.workdir(work_folder(self.study, attempt.root))
        if attempt.previous_run and checkpoint_epoch(folder) == 0:
            try:
                before = self.client.get_run(attempt.previous_run).data.tags.get(WORKDIR_TAG)
            except Exception:  # noqa: BLE001 - no tag, no earlier folder: start in the new one
                before = None
            if before and Path(before) != folder and checkpoint_epoch(Path(before)) > 0:
                return Path(before)
        return folder

    def on_done(self, trial: FrozenTrial) -> None:
        """The lineage has its outcome: its work folder goes, unless MLflow missed some of
        what the attempt wrote (then the folder is the only copy of it)."""
        if trial.user_attrs.get(MLFLOW_ERRORS) or self.study is None:
            return
        folder = self.settings.workdir(work_folder(self.study, root_of(trial)))
        shutil.rmtree(folder, ignore_errors=True)
        with suppress(OSError):  # the study's folder too, once its last trial's is gone
            folder.parent.rmdir()

    def run(self, attempt: Attempt, trial: optuna.Trial) -> AttemptReport:
        if attempt.previous_run:
            # The attempt this one replaces died or was stopped: close its run for good.
            close_abandoned(
                self.client,
                attempt.previous_run,
                Outcome.LOST,
                f"superseded by trial {attempt.number}",
                tags={"fer_sweep.superseded_by_trial": str(attempt.number)},
            )
        tags = {
            "optuna.study": attempt.study,
            "optuna.trial": str(attempt.number),
            "fer_sweep.budget": attempt.budget,
            **describe.choice_tags(attempt.params),
            **describe.source_tags(self.source),
        }
        if attempt.retry_of is not None:
            tags["fer_sweep.retry_of_trial"] = str(attempt.retry_of)
        workdir = self.workdir(attempt)
        progress = self.progress(attempt, trial)
        began = time.monotonic()
        try:
            with open_run(
                self.client,
                experiment=attempt.study,
                config=attempt.config,
                run_name=describe.trial_run_name(attempt.number, attempt.params),
                parent_run_id=self.parent_run_id,
                tags=tags,
                artifact_root=self.settings.artifact_root,
            ) as run:
                trial.set_user_attr(RUN_ID, run.id)
                result = tracked_train(
                    attempt.config,
                    self.dataset,
                    run=run,
                    workdir=workdir,
                    callbacks=[PruningCallback(trial), progress],
                    stop_event=self.stop_event,
                    progress=False,
                    resume_run=attempt.previous_run,
                )
                # Trained: from here nothing may cost the result, a note included.
                note = run.safely("trial note", describe.trial_note, attempt.config,
                                  private_final=result.test_final.accuracy,
                                  private_at_best=result.test_best.accuracy,
                                  best_epoch=result.best_epoch,
                                  epochs_trained=result.epochs_trained)  # fmt: skip
                if note is not None:
                    run.set_tags({describe.NOTE: note})
        except Exception as exc:  # noqa: BLE001 - every way an attempt ends is reported
            attrs: dict[str, Any] = {}
            if hasattr(exc, "epoch"):  # TrainingInterrupted: where the checkpoint stands
                attrs[STOPPED_AFTER_EPOCH] = int(exc.epoch)
            if disk_full(exc):  # resumable, and nothing else can run here: the worker stops
                return AttemptReport(Outcome.INTERRUPTED, attrs=attrs, halt=True,
                                     reason=f"trial {attempt.number}: the disk is full "
                                     f"({first_line(exc, 300)})")  # fmt: skip
            return AttemptReport(outcome_of(exc), reason=first_line(exc, 500), attrs=attrs)
        # What the trial spent outside its epochs (model, MLflow, the final evaluation) goes
        # into the forecasts beside the epochs' pace.
        with suppress(OSError):
            PaceCache(self.settings.cache_dir).record_overhead(
                self.pace_key(attempt.config), time.monotonic() - began - sum(progress.seconds),
                f"trial {attempt.number} of {attempt.study}")  # fmt: skip
        # The run's once-per-run numbers under the same names as in MLflow (per-class
        # accuracies stay in MLflow only).
        attrs = {k: v for k, v in final_metrics(result).items()
                 if not names.is_per_class(k)}  # fmt: skip
        attrs[RESUMED_FROM_EPOCH] = result.resumed_from_epoch
        if result.private_at_epochs:  # report_epochs: {epoch: accuracy}, keys as JSON wants
            attrs[names.PRIVATE_AT_EPOCH] = {str(e): a for e, a in result.private_at_epochs.items()}
        if run.errors:
            # The result is safe here; say in the study what MLflow is missing.
            attrs[MLFLOW_ERRORS] = "; ".join(run.errors)[:500]
        at_best = attempt.objective_at == "best"
        value = result.best_val_accuracy if at_best else result.final_val_accuracy
        return AttemptReport(Outcome.COMPLETE, value=value, attrs=attrs)

    def training_images(self, config) -> int:
        return training_images(int((self.dataset.split == 0).sum()), config.subset)

    def pace_key(self, config) -> str:
        """This machine's entry in the pace cache for trials of ``config``."""
        from fer_sweep.backend import name as backend_name

        return pace_key(backend_name(), config.arch, config.batch_size,
                        self.training_images(config))  # fmt: skip

    def progress(self, attempt: Attempt, trial: optuna.Trial) -> TrialProgress:
        """The attempt's progress, published on its trial (the live view and Ctrl-C read it)
        and its epoch times fed back into this machine's pace cache."""
        config = attempt.config
        images = self.training_images(config)
        key = self.pace_key(config)
        cache = PaceCache(self.settings.cache_dir)

        def publish(state: dict) -> None:
            with suppress(Exception):  # a busy storage skips one update, never the training
                trial.set_user_attr(EPOCH_PROGRESS, state)

        def epoch_done(seconds: list[float]) -> None:
            with suppress(Exception):
                trial.set_user_attr(EPOCH_SECONDS, seconds)
            with suppress(OSError):
                cache.record_epochs(key, seconds, images,
                                    f"trial {attempt.number} of {attempt.study}")  # fmt: skip

        progress = TrialProgress(f"trial {attempt.number}", epochs=config.epochs,
                                 steps=math.ceil(images / config.batch_size),
                                 batch_size=config.batch_size, publish=publish,
                                 epoch_done=epoch_done, lines=self.epoch_lines)  # fmt: skip
        return progress

    def on_lost(self, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ID)
        if run_id:
            close_abandoned(self.client, run_id, Outcome.LOST, "worker lost (no heartbeat)")

    def on_leave(self, study: optuna.Study, *, done: bool) -> None:
        settle_study_run(self.client, self.parent_run_id, study, done=done)


def settle_study_run(client, run_id: str, study: optuna.Study, *, done: bool) -> None:
    """Log the study's best trial and counts on its run and give the run the study's status."""
    trials = study.get_trials(deepcopy=False)
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if complete:
        best = max(complete, key=lambda t: t.value)
        tags["best_trial"] = str(best.number)
        tags[describe.NOTE] = describe.study_summary(study.study_name, best, len(complete),
                                                     best_config(study, best))  # fmt: skip
        for key in (names.PUBLIC_BEST, names.PUBLIC_FINAL, names.PRIVATE_FINAL,
                    names.PRIVATE_AT_BEST):  # fmt: skip
            if key in best.user_attrs:
                metrics[key] = best.user_attrs[key]
    for state, n in summarize(study).items():
        metrics[names.trial_count(state)] = n
    log_study_summary(client, run_id, metrics, tags)
    running = any(t.state == TrialState.RUNNING for t in trials)
    set_study_run_status(client, run_id, study_run_status(running=running, done=done))


def best_config(study: optuna.Study, best: FrozenTrial):
    """The config the study's best trial trained (None when it cannot be rebuilt), for the
    one rule of what compares with the thesis."""
    from fer_sweep.ranking import trial_config

    try:
        return trial_config(plan_of(study), study.study_name, best)
    except Exception:  # noqa: BLE001 - the note then says it is not comparable
        return None


def open_worker(
    study_name: str,
    settings: Settings,
    *,
    data: str | None = None,
    stop_event: threading.Event | None = None,
    max_trials: int | None = None,
    timeout: float | None = None,
    runner: Callable[..., Runner] | None = None,
    epoch_lines: bool = True,
) -> Worker:
    """A worker on the study ``study_name``, training for real and tracking in MLflow.

    ``timeout`` (seconds from now; default: the sweep file's) bounds this worker's time.
    """
    rdb = open_storage(settings)
    # load_study turns a missing study into one error line; its plan then needs no second load.
    plan = plan_of(load_study(study_name, settings, rdb))
    study, plan = load_for_worker(study_name, rdb, plan)
    stop_event = stop_event or threading.Event()
    runner = runner or TrainingRunner.open
    limit = timeout if timeout is not None else plan.timeout
    worker = Worker(
        study,
        plan,
        runner(study, settings, data=data, stop_event=stop_event, epoch_lines=epoch_lines),
        max_retries=settings.max_retries,
        stop_event=stop_event,
        max_trials=max_trials,
        deadline=None if limit is None else time.time() + float(limit),
    )
    # Whichever worker finds a dead worker's trial closes its MLflow run and decides.
    rdb.heartbeat_stale_trial_callback = worker.on_stale
    return worker
