"""The MLflow run lifecycle: where a run is started, which status it ends with, how it closes.

Every MLflow run fer-sweep creates goes through here: a training run (``fer_sweep train``,
each sweep trial) is opened with :func:`open_run` and closed by it whatever happens inside;
a study's parent run is kept by :func:`study_run` and :func:`set_study_run_status`. The
status a run ends with is the one :data:`fer_sweep.outcomes.STATUS` gives its outcome.

Tracking must never cost a result: once a run exists, every MLflow call made through a
:class:`TrackedRun` that fails is noted (reported once on stderr, tagged on the run when it
closes) instead of raised, so neither a lost server nor an odd error stops the training or
leaves the run RUNNING. Only creating the run may raise: then nothing has been done yet.
Writes made during training (:meth:`TrackedRun.later`) go through one background thread per
run, so a slow or unreachable tracking server never holds up a training step; the run waits
for them before it is closed, and their failures are noted like any other.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from fer_sweep import __version__
from fer_sweep import metric_names as mn
from fer_sweep.errors import first_line
from fer_sweep.outcomes import STATUS, Outcome, outcome_of

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from fer_sweep.config import TrainConfig


# --- one training run ---------------------------------------------------------------------

TAG_END_REASON = "fer_sweep.end_reason"
TAG_ERROR = "fer_sweep.error"
TAG_LOGGING_ERRORS = "fer_sweep.logging_errors"
TAG_OPTUNA_STATE = "optuna.state"


# How long closing a run after a second Ctrl-C waits for its background writes.
QUIT_FLUSH_SECONDS = 10.0


class TrackedRun:
    """An open MLflow run whose every write is safe: a failed call is noted, never raised.

    Args:
        client: the MLflow client.
        run_id: the run.
        trial: whether the run is an Optuna trial's (its close then tags ``optuna.state``).
    """

    def __init__(self, client: MlflowClient, run_id: str, *, trial: bool = False) -> None:
        self.client = client
        self.id = run_id
        self.trial = trial
        self.errors: list[str] = []
        self.closed_as: str | None = None
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue | None = None
        self._writer: threading.Thread | None = None

    def safely(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args, **kwargs)``; on failure note ``what`` failed and return None."""
        try:
            return call(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking loss is reported, never raised
            self.note(f"{what}: {first_line(err)}")
            return None

    def note(self, message: str) -> None:
        """Record a failed MLflow write; the first one is reported at once."""
        with self._lock:
            self.errors.append(message)
            first = len(self.errors) == 1
        if first:
            print(f"warning: MLflow logging failed: {message}", file=sys.stderr)

    def later(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """:meth:`safely` in the run's background writer: returns at once. Writes run one at a
        time in the order given; :meth:`flush` waits for them."""
        with self._lock:
            if self._writer is None:
                self._queue = queue.SimpleQueue()
                self._writer = threading.Thread(
                    target=self._write, daemon=True, name=f"mlflow-writer-{self.id}"
                )
                self._writer.start()
        self._queue.put((what, call, args, kwargs))

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):  # a flush marker: all before it are done
                item.set()
                continue
            what, call, args, kwargs = item
            try:
                self.safely(what, call, *args, **kwargs)
            except BaseException as err:  # noqa: BLE001 - the writer outlives any one write
                self.note(f"{what}: {first_line(err)}")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the writes handed to :meth:`later` so far; False if ``timeout`` passed
        first (they go on in the background). Their failures are in :attr:`errors`."""
        if self._writer is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self.safely("tags", self.client.log_batch, self.id, tags=batch)

    def close(self, outcome: Outcome, error: BaseException | None = None) -> None:
        """Tag why the run ended and give it the status of ``outcome`` (see :data:`STATUS`),
        once its background writes are done (after a second Ctrl-C, a few seconds at most)."""
        quitting = isinstance(error, KeyboardInterrupt)
        if not self.flush(QUIT_FLUSH_SECONDS if quitting else None):
            self.note("background writes still pending when the run was closed")
        state, status = STATUS[outcome]
        tags = {}
        if outcome is not Outcome.COMPLETE:
            tags[TAG_END_REASON] = outcome.value
            if error is not None:
                tags[TAG_ERROR] = (str(error).strip() or type(error).__name__)[:5000]
        if self.trial:
            tags[TAG_OPTUNA_STATE] = state.name
        if self.errors:
            tags[TAG_LOGGING_ERRORS] = "; ".join(self.errors)[:5000]
        self.set_tags(tags)
        self.safely("closing the run", self.client.set_terminated, self.id, status)
        self.closed_as = status
        if self.errors:
            print(
                f"warning: run {self.id} is missing {len(self.errors)} MLflow write(s); "
                f"the result itself is kept: {self.errors[-1]}",
                file=sys.stderr,
            )


@contextmanager
def open_run(
    client: MlflowClient,
    *,
    experiment: str | None = None,
    config: TrainConfig | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    artifact_root: Path | None = None,
    reopen: str | None = None,
) -> Iterator[TrackedRun]:
    """A RUNNING MLflow run for the ``with`` block, closed with the status of how it ended.

    Args:
        client: the MLflow client.
        experiment: the experiment's name (created when missing); not used with ``reopen``.
        config: the training config, logged whole as the run's params.
        run_name: the run's name.
        parent_run_id: the study's run, for a trial's run.
        tags: more tags; an ``optuna.trial`` tag makes it a trial's run.
        artifact_root: where a new experiment keeps its artifacts (local stores only).
        reopen: the id of an existing run to continue instead of creating one.

    Leaving the block normally closes the run FINISHED; an exception closes it with the status
    :data:`STATUS` gives :func:`outcome_of` the exception, and goes on its way.
    """
    tags = dict(tags or {})
    if reopen is not None:
        try:
            client.get_run(reopen)
        except Exception:  # noqa: BLE001 - MLflow raises its own types for a bad id
            from fer_sweep.errors import UserError

            raise UserError(f"no MLflow run {reopen} in {client.tracking_uri}") from None
        run = TrackedRun(client, reopen, trial="optuna.trial" in tags)
        run.safely("reopening the run", client.update_run, reopen, status="RUNNING")
    else:
        all_tags = {"fer_sweep.code_version": code_version(), **tags}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        exp = experiment_id(client, experiment or "Default", artifact_root)
        created = client.create_run(exp, run_name=run_name, tags=all_tags)
        run = TrackedRun(client, created.info.run_id, trial="optuna.trial" in tags)
        if config is not None:
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in config.to_params().items()]
            run.safely("params", client.log_batch, run.id, params=params)
    if reopen is not None and tags:
        run.set_tags(tags)
    try:
        yield run
    except BaseException as exc:
        run.close(outcome_of(exc), exc)
        raise
    run.close(Outcome.COMPLETE)


def close_abandoned(
    client: MlflowClient,
    run_id: str,
    outcome: Outcome,
    reason: str,
    *,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Close the run of an attempt whose worker cannot (it died, or was replaced by a retry).

    ``tags`` are set in any case; the status and reason only on a run still RUNNING. A
    failure is a warning, since the retry goes ahead regardless.
    """
    try:
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, value)
        if client.get_run(run_id).info.status != "RUNNING":
            return
        client.set_tag(run_id, TAG_END_REASON, outcome.value)
        client.set_tag(run_id, TAG_ERROR, reason)
        client.set_terminated(run_id, STATUS[outcome][1])
    except Exception as err:  # noqa: BLE001 - bookkeeping; the retry goes ahead regardless
        print(f"warning: could not close MLflow run {run_id}: {first_line(err)}", file=sys.stderr)


# --- a study's run ------------------------------------------------------------------------

STUDY_RUN_ATTR = "mlflow_parent_run_id"


def study_run(client: MlflowClient, study: optuna.Study, artifact_root: Path | None) -> str:
    """The study's parent MLflow run (one per study), created by whoever gets there first."""
    from fer_sweep.tracking._notes import source_tags, sweep_command

    run_id = study.user_attrs.get(STUDY_RUN_ATTR)
    if run_id:
        return run_id
    exp = experiment_id(client, study.study_name, artifact_root)
    attrs = study.user_attrs
    source = sweep_command(attrs.get("spec_name", study.study_name), attrs.get("budget"))
    run = client.create_run(
        exp,
        run_name=study.study_name,
        tags={
            "optuna.study": study.study_name,
            "fer_sweep.role": "study",
            "fer_sweep.code_version": code_version(),
            "mlflow.note.content": study.user_attrs.get("description", ""),
            **source_tags(source),
        },
    )
    new = run.info.run_id
    client.log_param(new, "budget", study.user_attrs.get("budget"))
    client.log_text(new, study.user_attrs.get("spec_text", ""), "sweep.yaml")
    # Created to be picked up by workers: RUNNING only while one of them runs a trial.
    client.update_run(new, status="SCHEDULED")
    study.set_user_attr(STUDY_RUN_ATTR, new)
    # Two workers may race here; the attribute that stuck wins and the loser's run goes.
    fresh = optuna.load_study(study_name=study.study_name, storage=study._storage)
    winner = fresh.user_attrs[STUDY_RUN_ATTR]
    if winner != new:
        client.delete_run(new)
    return winner


def study_run_status(*, running: bool, done: bool) -> str:
    """A study's run is RUNNING while any trial runs, else FINISHED once the study has all its
    trials, else KILLED (stopped before that; the next sweep or worker reopens it)."""
    if running:
        return "RUNNING"
    return "FINISHED" if done else "KILLED"


def set_study_run_status(client: MlflowClient, run_id: str, status: str) -> None:
    try:
        if status == "RUNNING":
            client.update_run(run_id, status="RUNNING")
        else:
            client.set_terminated(run_id, status)
    except Exception as err:  # noqa: BLE001 - the trials are safe in Optuna; say what's missing
        print(
            f"warning: could not update the study's MLflow run: {first_line(err)}", file=sys.stderr
        )


def log_study_summary(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], tags: Mapping[str, str]
) -> None:
    """The study run's summary (its best trial's numbers, with their percent twins as a
    trial's, and trial counts), logged best-effort."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    values = mn.with_percent({k: float(v) for k, v in metrics.items()})
    try:
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in values.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
    except Exception as err:  # noqa: BLE001 - the trials are safe in Optuna; say what's missing
        print(
            f"warning: could not update the study's MLflow run: {first_line(err)}", file=sys.stderr
        )


# --- experiments --------------------------------------------------------------------------


def experiment_id(client: MlflowClient, name: str, artifact_root: Path | None = None) -> str:
    """The experiment ``name``, created (or restored) when needed.

    ``artifact_root`` is where a new experiment of a local store keeps its artifacts.
    """
    import mlflow

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = artifact_root.as_uri() if artifact_root is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another worker created it between our lookup and our create.
        return client.get_experiment_by_name(name).experiment_id


def code_version() -> str:
    """The git commit of the checkout when there is one, else the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    return __version__
