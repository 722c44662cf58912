"""A sweep trial's attempt for real: an MLflow run nested under the study's, and training.

:class:`TrainingRunner` is the :class:`~fer_sweep.lifecycle._worker.Runner` that ``fer_sweep sweep``
and ``fer_sweep worker`` use. It turns what happened into an
:class:`~._worker.AttemptReport` (the worker decides what follows) and records the
results under the names of :mod:`fer_sweep.metric_names`. :func:`open_worker` puts it
behind a :class:`~fer_sweep.lifecycle._worker.Worker`, so the worker's decisions never import the
trainer.

A configuration with several seeds (the sweep file's ``seeds: K``) trains them one after the
other within its trial: seed ``k`` is ``config.for_seed(k)`` (the config's seed plus ``k``,
the subset of seed 0's images), each in its own MLflow run nested under the trial's run (the
configuration's), each in its own checkpoint folder ``seed-K/`` of the lineage's work
folder. The objective is the mean of the seeds' values. Only seed 0 reports its epochs to
the pruner, so every trial's intermediate values are one seed's curve, comparable with the
other trials'. A finished seed is written to ``seeds.json`` in the work folder: an attempt
interrupted during seed 1 resumes at seed 1 from its checkpoint, seed 0 kept (its run moved
under the new attempt's run).
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
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

from fer_sweep import metric_names as names
from fer_sweep.data import Dataset, load_dataset, require_splits
from fer_sweep.errors import disk_full, first_line
from fer_sweep.lifecycle._forecast import PaceCache, pace_key, training_images
from fer_sweep.lifecycle._progress import EPOCH_PROGRESS, EPOCH_SECONDS, TrialProgress
from fer_sweep.lifecycle._storage import load_study, open_storage
from fer_sweep.lifecycle._study import (
    RUN_ID,
    SEED_METRICS,
    SEED_RUNS,
    SEED_VALUES,
    STOPPED_AFTER_EPOCH,
    STOPPED_IN_SEED,
    plan_of,
    root_of,
    summarize,
    work_folder,
)
from fer_sweep.lifecycle._worker import Attempt, AttemptReport, Runner, Worker, load_for_worker
from fer_sweep.outcomes import Outcome, outcome_of
from fer_sweep.settings import Settings
from fer_sweep.tracking import (
    NOTE,
    WORKDIR_TAG,
    choice_tags,
    close_abandoned,
    connect,
    dataset_input,
    final_metrics,
    log_study_summary,
    open_run,
    set_study_run_status,
    source_tags,
    study_run,
    study_run_status,
    study_summary,
    sweep_command,
    tracked_train,
    trial_note,
    trial_run_name,
)
from fer_sweep.training import TrainResult, checkpoint_epoch, train

# What a complete attempt records on its Optuna trial (besides outcome and reason).
RESUMED_FROM_EPOCH = "resumed_from_epoch"
MLFLOW_ERRORS = "mlflow_errors"
SEED_TAG = "fer_sweep.seed"  # a seed's run: its index (0-based) and the seed it trained
SEEDS_FILE = "seeds.json"  # in the lineage's work folder: the seeds it has finished


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
        trainer: what trains one run (:func:`fer_sweep.training.train`; tests hand in a fake).
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
        trainer: Callable[..., TrainResult] = train,
        epoch_lines: bool = True,
    ) -> None:
        self.trainer = trainer  # tests hand in a fake one
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
            client.log_inputs(parent, datasets=[dataset_input(dataset)])
        except Exception as err:  # noqa: BLE001 - bookkeeping; the trials go ahead regardless
            print(
                f"warning: could not record the study's dataset: {first_line(err)}", file=sys.stderr
            )
        source = sweep_command(
            study.user_attrs.get("spec_name", study.study_name), study.user_attrs.get("budget")
        )
        runner = cls(
            study.study_name,
            settings,
            client,
            dataset,
            stop_event,
            parent,
            source,
            epoch_lines=epoch_lines,
        )
        runner.study = study
        return runner

    def _trial_run(self, attempt: Attempt, tags: dict[str, str]):
        """The trial's MLflow run (a single seed's, or the parent of its seed runs)."""
        return open_run(
            self.client,
            experiment=attempt.study,
            config=attempt.config,
            run_name=trial_run_name(attempt.number, attempt.params),
            parent_run_id=self.parent_run_id,
            tags=tags,
            artifact_root=self.settings.artifact_root,
        )

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
            **choice_tags(attempt.params),
            **source_tags(self.source),
        }
        if attempt.retry_of is not None:
            tags["fer_sweep.retry_of_trial"] = str(attempt.retry_of)
        workdir = self.workdir(attempt)
        if attempt.seeds > 1:
            return self._run_seeds(attempt, trial, tags, workdir)
        progress = self.progress(attempt, trial, attempt.config)
        began = time.monotonic()
        try:
            with self._trial_run(attempt, tags) as run:
                trial.set_user_attr(RUN_ID, run.id)
                result = self._train(
                    attempt.config, run, workdir, trial, attempt.previous_run, progress=progress
                )
                self._note(run, attempt.config, result)
        except Exception as exc:  # noqa: BLE001 - every way an attempt ends is reported
            return _failed(attempt, exc)
        self._record_overhead(attempt, attempt.config, time.monotonic() - began, progress)
        attrs = _result_attrs(result)
        attrs[RESUMED_FROM_EPOCH] = result.resumed_from_epoch
        if run.errors:
            # The result is safe here; say in the study what MLflow is missing.
            attrs[MLFLOW_ERRORS] = "; ".join(run.errors)[:500]
        return AttemptReport(Outcome.COMPLETE, value=_value(attempt, result), attrs=attrs)

    def _train(self, config, run, workdir: Path, trial, resume_run, *, progress, prune=True):
        return tracked_train(
            config,
            self.dataset,
            run=run,
            workdir=workdir,
            callbacks=([PruningCallback(trial)] if prune else []) + [progress],
            stop_event=self.stop_event,
            progress=False,
            resume_run=resume_run,
            trainer=self.trainer,
        )

    def _note(self, run, config, result: TrainResult) -> None:
        # Trained: from here nothing may cost the result, a note included.
        note = run.safely(
            "trial note",
            trial_note,
            config,
            private_final=result.test_final.accuracy,
            private_at_best=result.test_best.accuracy,
            best_epoch=result.best_epoch,
            epochs_trained=result.epochs_trained,
        )
        if note is not None:
            run.set_tags({NOTE: note})

    def _run_seeds(
        self, attempt: Attempt, trial: optuna.Trial, tags: dict[str, str], workdir: Path
    ) -> AttemptReport:
        """The configuration's seeds one after the other, each a run nested under the
        trial's; the value is their mean. Seeds that an earlier attempt of the lineage
        finished (``seeds.json``) are kept, not trained again."""
        record = workdir / SEEDS_FILE
        done: dict[str, dict] = json.loads(record.read_text()) if record.is_file() else {}
        errors: list[str] = []
        resumed: tuple[int, int] | None = None  # (seed, epoch) this attempt resumed
        try:
            with self._trial_run(attempt, {**tags, "fer_sweep.seeds": str(attempt.seeds)}) as run:
                trial.set_user_attr(RUN_ID, run.id)
                for k in range(attempt.seeds):
                    key = str(k)
                    if key in done and "value" in done[key]:
                        # Finished by an earlier attempt: its run joins this configuration's.
                        run.safely(
                            f"seed {k}'s run",
                            self.client.set_tag,
                            done[key]["run_id"],
                            "mlflow.parentRunId",
                            run.id,
                        )
                        continue
                    config = attempt.config.for_seed(k)
                    with open_run(
                        self.client,
                        experiment=attempt.study,
                        config=config,
                        run_name=f"t{attempt.number:02d} seed {k}",
                        parent_run_id=run.id,
                        tags={
                            SEED_TAG: f"{k} (seed {config.seed})",
                            "optuna.study": attempt.study,
                            "fer_sweep.seed_of_trial": str(attempt.number),
                            "fer_sweep.budget": attempt.budget,
                            **choice_tags(attempt.params),
                            **source_tags(self.source),
                        },
                        artifact_root=self.settings.artifact_root,
                    ) as child:
                        # Where this seed checkpoints, before it trains: a retry on another
                        # machine fetches its checkpoint from this run.
                        before = done.get(key, {}).get("run_id")
                        done[key] = {"run_id": child.id}
                        _write_json(record, done)
                        progress = self.progress(attempt, trial, config, f" seed {k}")
                        began = time.monotonic()
                        result = self._train(
                            config,
                            child,
                            workdir / f"seed-{k}",
                            trial,
                            before,
                            progress=progress,
                            prune=k == 0,
                        )
                        self._note(child, config, result)
                    self._record_overhead(attempt, config, time.monotonic() - began, progress)
                    if resumed is None:
                        resumed = (k, result.resumed_from_epoch)
                    errors += child.errors
                    done[key] = {
                        "run_id": child.id,
                        "value": _value(attempt, result),
                        "attrs": _result_attrs(result),
                    }
                    _write_json(record, done)
                    trial.set_user_attr(SEED_VALUES, [done[str(i)]["value"] for i in range(k + 1)])
                attrs = _seed_attrs([done[str(k)] for k in range(attempt.seeds)])
                run.safely("the seeds' means", _log_means, self.client, run.id, attrs)
                run.set_tags({NOTE: _seeds_note(attempt, attrs)})
                errors += run.errors
        except Exception as exc:  # noqa: BLE001 - every way an attempt ends is reported
            report = _failed(attempt, exc)
            running = [int(k) for k, v in done.items() if "value" not in v]
            if running:
                report.attrs[STOPPED_IN_SEED] = min(running)
            return report
        if resumed is not None:
            attrs[RESUMED_FROM_EPOCH] = resumed[1]
        if errors:
            attrs[MLFLOW_ERRORS] = "; ".join(errors)[:500]
        return AttemptReport(
            Outcome.COMPLETE, value=statistics.fmean(attrs[SEED_VALUES]), attrs=attrs
        )

    def _record_overhead(self, attempt: Attempt, config, seconds: float, progress) -> None:
        # What a run spent outside its epochs (model, MLflow, the final evaluation) goes into
        # the forecasts beside the epochs' pace.
        with suppress(OSError):
            PaceCache(self.settings.cache_dir).record_overhead(
                self.pace_key(config),
                seconds - sum(progress.seconds),
                f"trial {attempt.number} of {attempt.study}",
            )

    def training_images(self, config) -> int:
        return training_images(int((self.dataset.split == 0).sum()), config.subset)

    def pace_key(self, config) -> str:
        """This machine's entry in the pace cache for trials of ``config``."""
        from fer_sweep.backend import name as backend_name

        return pace_key(
            backend_name(), config.network, config.batch_size, self.training_images(config)
        )

    def progress(self, attempt: Attempt, trial: optuna.Trial, config, label: str = ""):
        """One run's progress (a seed's, with ``label``), published on its trial (the live
        view and Ctrl-C read it) and its epoch times fed back into this machine's pace
        cache."""
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
                cache.record_epochs(
                    key, seconds, images, f"trial {attempt.number} of {attempt.study}"
                )

        return TrialProgress(
            f"trial {attempt.number}{label}",
            epochs=config.epochs,
            steps=math.ceil(images / config.batch_size),
            batch_size=config.batch_size,
            publish=publish,
            epoch_done=epoch_done,
            lines=self.epoch_lines,
        )

    def on_lost(self, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get(RUN_ID)
        if run_id:
            close_abandoned(self.client, run_id, Outcome.LOST, "worker lost (no heartbeat)")

    def on_leave(self, study: optuna.Study, *, done: bool) -> None:
        settle_study_run(self.client, self.parent_run_id, study, done=done)


def _failed(attempt: Attempt, exc: Exception) -> AttemptReport:
    attrs: dict[str, Any] = {}
    if hasattr(exc, "epoch"):  # TrainingInterrupted: where the checkpoint stands
        attrs[STOPPED_AFTER_EPOCH] = int(exc.epoch)
    if disk_full(exc):  # resumable, and nothing else can run here: the worker stops
        return AttemptReport(
            Outcome.INTERRUPTED,
            attrs=attrs,
            halt=True,
            reason=f"trial {attempt.number}: the disk is full ({first_line(exc, 300)})",
        )
    return AttemptReport(outcome_of(exc), reason=first_line(exc, 500), attrs=attrs)


def _value(attempt: Attempt, result: TrainResult) -> float:
    """The objective of one run: PublicTest accuracy at its best or its last epoch."""
    at_best = attempt.objective_at == "best"
    return result.best_val_accuracy if at_best else result.final_val_accuracy


def _result_attrs(result: TrainResult) -> dict[str, Any]:
    """The run's once-per-run numbers under the same names as in MLflow (per-class
    accuracies stay in MLflow only)."""
    attrs: dict[str, Any] = {
        k: v for k, v in final_metrics(result).items() if not names.is_per_class(k)
    }
    if result.private_at_epochs:  # report_epochs: {epoch: accuracy}, keys as JSON wants
        attrs[names.PRIVATE_AT_EPOCH] = {str(e): a for e, a in result.private_at_epochs.items()}
    return attrs


def _seed_attrs(seeds: list[dict]) -> dict[str, Any]:
    """The trial's attributes from its seeds' records: each number the mean over the seeds
    (PrivateTest at each report epoch too), and the per-seed lists :data:`SEED_VALUES`,
    :data:`SEED_RUNS` and :data:`SEED_METRICS`."""
    per = [s["attrs"] for s in seeds]
    numbers = [k for k, v in per[0].items() if isinstance(v, int | float)]
    out: dict[str, Any] = {k: statistics.fmean(a[k] for a in per) for k in numbers}
    for k in (names.BEST_EPOCH, names.EPOCHS_TRAINED):  # epochs stay whole: seed 0's
        if k in per[0]:
            out[k] = per[0][k]
    if names.PRIVATE_AT_EPOCH in per[0]:
        out[names.PRIVATE_AT_EPOCH] = {
            e: statistics.fmean(a[names.PRIVATE_AT_EPOCH][e] for a in per)
            for e in per[0][names.PRIVATE_AT_EPOCH]
        }
    out[SEED_VALUES] = [s["value"] for s in seeds]
    out[SEED_RUNS] = [s["run_id"] for s in seeds]
    out[SEED_METRICS] = {k: [a[k] for a in per] for k in numbers}
    return out


def _log_means(client, run_id: str, attrs: dict[str, Any]) -> None:
    """The trial run's metrics: the seeds' means under the runs' own names, and their sd."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    per = attrs[SEED_METRICS]
    metrics = [Metric(k, float(attrs[k]), now, 0) for k in per]
    metrics += [Metric(f"{k}_sd", statistics.stdev(v), now, 0) for k, v in per.items()]
    client.log_batch(run_id, metrics=metrics)


def _seeds_note(attempt: Attempt, attrs: dict[str, Any]) -> str:
    """The configuration run's note: PrivateTest mean +- sd over its seeds."""
    from fer_sweep.tracking import mean_sd

    per = attrs[SEED_METRICS]
    return "\n".join(
        [
            f"PrivateTest {mean_sd(per[names.PRIVATE_FINAL])} % over {attempt.seeds} seeds",
            "",
            f"- PrivateTest with the final weights: {mean_sd(per[names.PRIVATE_FINAL])} % "
            f"(mean +- sd over {attempt.seeds} seeds, each a nested run).",
            f"- With the best-PublicTest epoch's weights: {mean_sd(per[names.PRIVATE_AT_BEST])} %.",
            f"- The objective (PublicTest, {attempt.objective_at} epoch): mean of "
            + ", ".join(f"{100 * v:.2f}" for v in attrs[SEED_VALUES])
            + " %.",
        ]
    )


def _write_json(path: Path, data: dict) -> None:
    """Written whole, then renamed into place: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def settle_study_run(client, run_id: str, study: optuna.Study, *, done: bool) -> None:
    """Log the study's best trial and counts on its run and give the run the study's status."""
    trials = study.get_trials(deepcopy=False)
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if complete:
        best = max(complete, key=lambda t: t.value)
        tags["best_trial"] = str(best.number)
        tags[NOTE] = study_summary(study.study_name, best, len(complete), best_config(study, best))
        for key in (
            names.PUBLIC_BEST,
            names.PUBLIC_FINAL,
            names.PRIVATE_FINAL,
            names.PRIVATE_AT_BEST,
        ):
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
    from fer_sweep.lifecycle._study import trial_config

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
