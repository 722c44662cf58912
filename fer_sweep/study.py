"""Studies: create or resume one from a sweep file, and the workers that run its trials.

A study lives in Optuna's RDB storage (SQLite under ``mlruns/`` by default, PostgreSQL for
many machines) and carries its own definition (the sweep file's text and the budget) as
study attributes, so a worker needs nothing but the storage URL and the study name.

Each trial is one tracked training run (:mod:`fer_sweep.run`) nested under the study's
parent MLflow run. Workers keep a heartbeat: a worker that dies mid-trial leaves a trial
that the next worker marks failed and retries, and the retry resumes from the dead
attempt's checkpoint because the checkpoint folder is keyed to the original trial.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import keras
import optuna
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from fer_sweep.config import make_config
from fer_sweep.errors import UserError
from fer_sweep.samplers import make_pruner, make_sampler
from fer_sweep.space import SweepSpec, suggest, trial_config_values
from fer_sweep.sweepfile import load_sweep
from fer_sweep.tracking import store_dir

HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 60
MAX_RETRY = 3
# A worker is presumed dead when its trial's heartbeat is older than the grace period; tests
# (and impatient users on one machine) shorten both through the environment.
HEARTBEAT_ENV = "FER_SWEEP_HEARTBEAT"
GRACE_ENV = "FER_SWEEP_GRACE"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

# Failed trials are reported in one line by the objective; Optuna's tracebacks are noise.
optuna.logging.set_verbosity(optuna.logging.ERROR)
# Heartbeats and retries are "experimental" in Optuna 5 and have been since 2.8; say it once here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("FER_SWEEP_STORAGE"):
        return os.environ["FER_SWEEP_STORAGE"]
    return f"sqlite:///{store_dir() / 'optuna.db'}"


def _seconds(env: str, default: int) -> int:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"${env}={raw!r}: expected a whole number of seconds") from None
    if value < 1:
        raise UserError(f"${env}={raw!r}: expected at least 1 second")
    return value


def heartbeat_seconds() -> tuple[int, int]:
    """(heartbeat interval, grace period): $FER_SWEEP_HEARTBEAT / $FER_SWEEP_GRACE or 20 / 60."""
    beat = _seconds(HEARTBEAT_ENV, HEARTBEAT_SECONDS)
    grace = _seconds(GRACE_ENV, GRACE_SECONDS)
    if grace <= beat:
        raise UserError(f"${GRACE_ENV} ({grace}) must be longer than ${HEARTBEAT_ENV} ({beat})")
    return beat, grace


def open_storage(url: str | None = None) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats, checked before any training starts."""
    url = storage_url(url)
    beat, grace = heartbeat_seconds()
    engine_url = url
    if url.startswith(("postgresql://", "postgres://")):
        # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3; fer-sweep ships psycopg2.
        engine_url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    engine_kwargs: dict = {}
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers share the file: wait for the lock rather than fail at once.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif url.startswith("postgresql"):
        # A server that is down fails in seconds, not after the OS's TCP timeout; connections
        # that a days-long sweep leaves idle are checked before use.
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            engine_url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=beat,
            grace_period=grace,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )
    except Exception as err:  # noqa: BLE001 - SQLAlchemy/driver errors all mean "unreachable"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"Optuna storage {url} is unreachable: {first[:200]}") from None


def study_name_for(spec: SweepSpec, budget: str) -> str:
    # Budgets are separate studies: a smoke result must never rank beside a thesis-length one.
    return f"{spec.name}-{budget}"


@dataclass(frozen=True)
class StudyPlan:
    """What a worker needs to run a study's trials, read back from the study's attributes."""

    spec: SweepSpec
    budget_name: str
    n_trials: int
    timeout: float | None


def _spec_from_text(text: str, name: str) -> SweepSpec:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text)
        return load_sweep(path)


def plan_of(study: optuna.Study) -> StudyPlan:
    attrs = study.user_attrs
    if "spec_text" not in attrs:
        raise UserError(f"study '{study.study_name}' was not created by fer_sweep")
    spec = _spec_from_text(attrs["spec_text"], attrs["spec_name"])
    return StudyPlan(spec, attrs["budget"], int(attrs["n_trials"]), attrs.get("timeout"))


def grid_points(spec: SweepSpec) -> list[dict]:
    """Every point of a grid sweep, as Optuna params (grids have no conditional params)."""
    sampled = {n: p for n, p in spec.params.items() if p.type != "fixed"}
    values = [p.grid_values() for p in sampled.values()]
    return [dict(zip(sampled, combo, strict=True)) for combo in itertools.product(*values)]


def _same_point(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def create_or_resume(
    spec: SweepSpec,
    *,
    budget: str | None = None,
    storage: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
) -> optuna.Study:
    """Create the study for ``spec`` at ``budget``, or load it, and queue its missing points.

    A grid (or a file of fixed ``trials``) enqueues every point that has no complete,
    pruned, queued or running trial yet, so a re-run only runs what is missing.
    """
    budget = budget or spec.default_budget
    spec.budget(budget)  # unknown budget names fail here, before anything is written
    name = study_name_for(spec, budget)
    rdb = open_storage(storage)
    study = optuna.create_study(
        study_name=name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
    )
    text = spec.path.read_text()
    known = study.user_attrs.get("spec_text")
    if known is not None and _definition(known) != _definition(text):
        raise UserError(
            f"study '{name}' was created from another version of {spec.path}; "
            f"put the change in a new sweep file (or a new 'name:'), or delete the study"
        )
    points = _queued_points(spec)
    target = n_trials or spec.n_trials or (len(points) if points else None)
    if target is None:
        raise UserError(f"{spec.path}: set n_trials or timeout (or pass --n-trials)")
    attrs = {
        "spec_text": text,
        "spec_name": spec.path.stem,
        "budget": budget,
        "n_trials": target,
        "timeout": timeout if timeout is not None else spec.timeout,
        "description": spec.description,
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    if points:
        _enqueue_missing(study, points)
    return study


def _interrupted(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and "interrupted" in t.user_attrs


def _definition(text: str) -> dict:
    """What a sweep file asks for; its description and comments may change under a study."""
    data = yaml.safe_load(text) or {}
    data.pop("description", None)
    return data


def _queued_points(spec: SweepSpec) -> list[dict]:
    if spec.trials:
        return [dict(t) for t in spec.trials]
    if spec.sampler.get("type") == "grid":
        return grid_points(spec)
    return []


def _enqueue_missing(study: optuna.Study, points: list[dict]) -> None:
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING, TrialState.RUNNING)
    # An interrupted trial is not missing: the worker requeues it to resume its checkpoint.
    have = [t.params or t.system_attrs.get("fixed_params", {}) for t in study.get_trials(
        deepcopy=False) if t.state in live or _interrupted(t)]  # fmt: skip
    for point in points:
        if not any(_same_point(point, h) for h in have):
            study.enqueue_trial(point, skip_if_exists=False)


# --- running trials ---------------------------------------------------------------------


def _worker_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    sampler = make_sampler(spec)
    if isinstance(sampler, optuna.samplers.GridSampler):
        # Every grid point is enqueued (create_or_resume), so the grid sampler has nothing to
        # choose; and its after_trial hook assumes the trials carry the ids it hands out
        # (KeyError 'grid_id' on a one-point grid or a retried point). A worker never samples
        # a grid trial, so any sampler that leaves enqueued params alone will do.
        return optuna.samplers.RandomSampler(seed=0)
    return sampler


class PruningCallback(keras.callbacks.Callback):
    """Reports PublicTest accuracy to Optuna every epoch and stops the trial when told to."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial

    def on_epoch_end(self, epoch, logs=None):
        value = float((logs or {}).get("val_accuracy", 0.0))
        self.trial.report(value, step=epoch + 1)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (PublicTest {value:.4f})")


class Worker:
    """Runs a study's trials until it has its number of trials, time runs out or it is stopped."""

    def __init__(
        self,
        study_name: str,
        *,
        storage: str | None = None,
        tracking_uri: str | None = None,
        data: str | Path | None = None,
        stop_event: threading.Event | None = None,
        max_trials: int | None = None,
    ) -> None:
        from fer_sweep.data import load_dataset
        from fer_sweep.tracking import connect

        self.rdb = open_storage(storage)
        try:
            study = optuna.load_study(study_name=study_name, storage=self.rdb)
        except KeyError:
            known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(self.rdb))
            raise UserError(
                f"no study '{study_name}' in {storage_url(storage)} (studies: {known or 'none'})"
            ) from None
        self.plan = plan_of(study)
        self.study = optuna.load_study(
            study_name=study_name,
            storage=self.rdb,
            sampler=_worker_sampler(self.plan.spec),
            pruner=make_pruner(self.plan.spec),
        )
        self.client = connect(tracking_uri)
        self.dataset = load_dataset(data)
        self.stop_event = stop_event or threading.Event()
        self.max_trials = max_trials
        self.parent_run_id = parent_run(self.study, self.client)
        # Whichever worker finds a dead worker's trial also closes that attempt's MLflow run.
        self.rdb.heartbeat_stale_trial_callback = self._on_stale

    def _on_stale(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            print(f"trial {trial.number}: its worker stopped beating; retrying it", file=sys.stderr)
            _close_run(self.client, run_id, "worker lost (no heartbeat)")
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)

    def _more_to_do(self, deadline: float | None, ran: int) -> bool:
        if self.stop_event.is_set() or (deadline is not None and time.time() >= deadline):
            return False
        if self.max_trials is not None and ran >= self.max_trials:
            return False
        # A dead worker's trial is only noticed when a trial starts; look now, so that a worker
        # that joins when the stale trial is the only one left still runs it.
        optuna.storages.fail_stale_trials(self.study)
        trials = self.study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return True
        if _queued_points(self.plan.spec):
            return False  # a grid or a fixed list is done when its queue is empty
        busy = sum(t.state in FINISHED or t.state == TrialState.RUNNING for t in trials)
        return busy < self.plan.n_trials

    def run(self) -> int:
        """Run trials until there is nothing left; returns how many this worker ran."""
        timeout = self.plan.timeout
        deadline = time.time() + float(timeout) if timeout else None
        ran = 0
        self._requeue_interrupted()  # a hard stop (second Ctrl-C) last time leaves some
        while self._more_to_do(deadline, ran):
            self.study.optimize(self.objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            ran += 1
            self._requeue_interrupted()
        return ran

    def _requeue_interrupted(self) -> None:
        # An interrupted trial is recorded as failed; a queued copy of it (same params, same
        # checkpoint folder) makes the next run of the sweep pick it up where it stopped. A
        # finished trial cannot be written to, so "already requeued" is read from the copies.
        trials = self.study.get_trials(deepcopy=False)
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        for t in trials:
            if _interrupted(t) and t.number not in retried:
                RetryHeartbeatStaleTrialCallback(max_retry=None)(self.study, t)

    def objective(self, trial: optuna.Trial) -> float:
        from fer_sweep.run import tracked_train, workdir_for
        from fer_sweep.tracking import start_run

        spec, plan = self.plan.spec, self.plan
        sampled = suggest(spec, trial)
        values = trial_config_values(spec, sampled, spec.budget(plan.budget_name))
        config = make_config(values, origin=f"trial {trial.number}")
        # optuna.Trial hides system attrs; the stored (frozen) trial has the retry lineage.
        origin = self.study.get_trials(deepcopy=False)[trial.number].system_attrs.get(
            "failed_trial"
        )
        root = trial.number if origin is None else origin
        previous_run = trial.user_attrs.get("mlflow_run_id")
        if previous_run:
            # The attempt this one replaces died or was stopped: close its run for good.
            _close_run(self.client, previous_run, "superseded by a retry")
            with suppress(Exception):
                self.client.set_tag(
                    previous_run, "fer_sweep.superseded_by_trial", str(trial.number)
                )
        tags = {
            "optuna.study": self.study.study_name,
            "optuna.trial": str(trial.number),
            "optuna.state": "RUNNING",
            "fer_sweep.budget": plan.budget_name,
        }
        if origin is not None:
            tags["fer_sweep.retry_of_trial"] = str(origin)
        run_id = start_run(
            self.client,
            self.study.study_name,
            config,
            run_name=f"trial-{trial.number:04d}",
            parent_run_id=self.parent_run_id,
            tags=tags,
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        workdir = workdir_for(f"{self.study.study_name}/trial-{root:04d}")
        state = "FAIL"
        try:
            result = tracked_train(
                config,
                self.dataset,
                client=self.client,
                run_id=run_id,
                workdir=workdir,
                callbacks=[PruningCallback(trial)],
                stop_event=self.stop_event,
                progress=False,
                killed_on=(optuna.TrialPruned,),
                resume_run=previous_run,
            )
            state = "COMPLETE"
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except KeyboardInterrupt:
            # A hard stop: the last checkpoint stays, and the next run resumes from it.
            from fer_sweep.train import checkpoint_epoch

            with suppress(Exception):
                trial.set_user_attr("interrupted", checkpoint_epoch(workdir))
            raise
        except Exception as exc:
            from fer_sweep.train import TrainingDiverged, TrainingInterrupted

            if isinstance(exc, TrainingInterrupted):
                trial.set_user_attr("interrupted", exc.epoch)
            else:
                what = "diverged" if isinstance(exc, TrainingDiverged) else "failed"
                print(f"trial {trial.number} {what}: {exc}", file=sys.stderr)
                trial.set_user_attr("end_reason", what)
            trial.set_user_attr("error", str(exc)[:500])
            raise
        finally:
            # Bookkeeping must not mask the trial's own outcome.
            with suppress(Exception):
                self.client.set_tag(run_id, "optuna.state", state)
        at_best = spec.objective_at == "best"
        test = result.test_best if at_best else result.test_final
        trial.set_user_attr("private_accuracy", test.accuracy)
        trial.set_user_attr("epochs_trained", result.epochs_trained)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("resumed_from_epoch", result.resumed_from_epoch)
        if result.extra.get("logging_errors"):
            # The result is safe here; say in the study what MLflow is missing.
            trial.set_user_attr("mlflow_errors", "; ".join(result.extra["logging_errors"])[:500])
        return result.best_val_accuracy if at_best else result.final_val_accuracy


def _close_run(client, run_id: str, reason: str) -> None:
    """Mark a dead or replaced attempt's MLflow run KILLED (if it is still RUNNING)."""
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "fer_sweep.end_reason", reason)
            client.set_terminated(run_id, "KILLED")
    except Exception as err:  # noqa: BLE001 - bookkeeping; the retry goes ahead regardless
        print(f"warning: could not close MLflow run {run_id}: {err}", file=sys.stderr)


def parent_run(study: optuna.Study, client) -> str:
    """The study's parent MLflow run (one per study), created by whoever gets there first."""
    from fer_sweep.tracking import code_version, experiment_id

    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id:
        return run_id
    exp = experiment_id(client, study.study_name)
    run = client.create_run(
        exp,
        run_name=study.study_name,
        tags={
            "optuna.study": study.study_name,
            "fer_sweep.role": "study",
            "fer_sweep.code_version": code_version(),
            "mlflow.note.content": study.user_attrs.get("description", ""),
        },
    )
    client.log_param(run.info.run_id, "budget", study.user_attrs.get("budget"))
    client.log_text(run.info.run_id, study.user_attrs.get("spec_text", ""), "sweep.yaml")
    study.set_user_attr("mlflow_parent_run_id", run.info.run_id)
    # Two workers may race here; the attribute that stuck wins and the loser's run is closed.
    winner = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs[
        "mlflow_parent_run_id"
    ]
    if winner != run.info.run_id:
        client.delete_run(run.info.run_id)
    return winner


def summarize(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts


# --- stopping on Ctrl-C ---------------------------------------------------------------


@contextmanager
def graceful_interrupt(stop_event: threading.Event) -> Iterator[None]:
    """First Ctrl-C: finish the current epoch, checkpoint, stop. Second: stop at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.set()
        print(
            "\nstopping after the current epoch (checkpointed; the next run resumes it); "
            "Ctrl-C again to quit now",
            file=sys.stderr,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --- several workers on one machine ---------------------------------------------------


def spawn_workers(
    study_name: str,
    jobs: int,
    *,
    storage: str,
    tracking_uri: str | None,
    data: str | None,
    log_dir: Path,
) -> list[subprocess.Popen]:
    """Start ``jobs`` worker processes, each with its share of the cores."""
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    procs = []
    for i in range(jobs):
        cmd = [sys.executable, "-m", "fer_sweep", "worker", "--study", study_name,
               "--storage", storage, "--threads", str(threads)]  # fmt: skip
        if tracking_uri:
            cmd += ["--tracking-uri", tracking_uri]
        if data:
            cmd += ["--data", str(data)]
        log = open(log_dir / f"{study_name}-worker{i}.log", "ab")  # noqa: SIM115 - child owns it
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    return procs


def set_threads(threads: int | None) -> None:
    """Limit the backend's CPU threads (must run before the first op)."""
    if not threads:
        return
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
