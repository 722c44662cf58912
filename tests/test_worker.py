"""The worker's decisions, driven with in-memory Optuna and a fake trainer (no TensorFlow).

What a study counts (configurations, not attempts), what a worker admits (no duplicate, no
trial past n_trials), what follows an attempt (each attempt's own outcome), and that
samplers seeded per trial never repeat each other across processes or resumes.
"""

from __future__ import annotations

import textwrap
import threading

import optuna
import pytest
from optuna.trial import TrialState

from fer_sweep.lifecycle import RUN_ID, create_or_resume, settle_all
from fer_sweep.lifecycle._decisions import Step, admission, next_step, resumes_first, wants_more
from fer_sweep.lifecycle._settle import put_resumes_first, settle
from fer_sweep.lifecycle._study import (
    OUTCOME,
    PREVIOUS_RUN,
    RETRY_OF,
    lineages,
    space_points,
    summarize,
)
from fer_sweep.lifecycle._worker import AttemptReport, Runner, Worker, load_for_worker
from fer_sweep.outcomes import Outcome
from fer_sweep.search import load_sweep
from fer_sweep.settings import Settings

C, P, STOP, L, D, E = (
    Outcome.COMPLETE,
    Outcome.PRUNED,
    Outcome.INTERRUPTED,
    Outcome.LOST,
    Outcome.DIVERGED,
    Outcome.ERROR,
)

GRID = """
name: grid
base: {arch: C, epochs: 2}
space:
  dropout:
    type: categorical
    choices:
      "a": {conv_dropout: 0.0, fc_dropout: 0.0}
      "b": {conv_dropout: 0.1, fc_dropout: 0.1}
      "c": {conv_dropout: 0.2, fc_dropout: 0.2}
      "d": {conv_dropout: 0.3, fc_dropout: 0.3}
      "e": {conv_dropout: 0.4, fc_dropout: 0.4}
      "f": {conv_dropout: 0.5, fc_dropout: 0.5}
sampler: grid
default_budget: smoke
"""

TPE = """
name: tpe
base: {arch: C, epochs: 2}
space:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  batch_size: {type: categorical, choices: [32, 64]}
sampler: {type: tpe, seed: 0, n_startup_trials: 10}
n_trials: 4
default_budget: smoke
"""

ENQUEUED = """
name: enq
base: {arch: C, epochs: 2}
space:
  batch_size: {type: categorical, choices: [32, 64, 128]}
  fc_dropout: {type: categorical, choices: [0.0, 0.5]}
trials:
  - {batch_size: 32, fc_dropout: 0.0}
  - {batch_size: 64, fc_dropout: 0.0}
  - {batch_size: 128, fc_dropout: 0.0}
sampler: {type: tpe, seed: 0}
n_trials: 3
default_budget: smoke
"""


class FakeRunner(Runner):
    """Reports what ``script`` says for each attempt; value: a number made from the params."""

    def __init__(self, script=None):
        self.script = script or (lambda attempt, n: AttemptReport(Outcome.COMPLETE))
        self.attempts = []
        self.left = []

    def run(self, attempt, trial):
        self.attempts.append(attempt)
        report = self.script(attempt, len(self.attempts))
        if report.outcome is Outcome.COMPLETE and report.value is None:
            report.value = (hash(tuple(sorted(attempt.params.items()))) % 1000) / 1000
        trial.set_user_attr(RUN_ID, f"run-{attempt.number}")
        return report

    def on_leave(self, study, *, done):
        self.left.append(done)


@pytest.fixture
def settings(tmp_path):
    return Settings.resolve(store_dir=tmp_path / "mlruns", environ={})


@pytest.fixture
def storage():
    return optuna.storages.InMemoryStorage()


def spec_of(tmp_path, text, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return load_sweep(path)


def worker(study, runner, *, max_retries=1, **kw):
    loaded, plan = load_for_worker(study.study_name, study._storage)
    return Worker(loaded, plan, runner, max_retries=max_retries, **kw)


def points(study):
    return [
        tuple(sorted(t.params.items()))
        for t in study.get_trials()
        if t.state == TrialState.COMPLETE
    ]


# --- the decision after an attempt ---------------------------------------------------------


def test_next_step_reads_each_attempts_own_outcome():
    assert next_step([C], 1) is Step.DONE
    assert next_step([STOP, P], 1) is Step.DONE
    assert next_step([D], 3) is Step.DONE  # a diverged run diverges again: a result
    assert next_step([STOP], 1) is Step.RESUME
    assert next_step([STOP] * 4, 0) is Step.RESUME  # stops on request cost no retry
    # Interrupted once, then an error: the error counts, not the earlier interruption.
    assert next_step([STOP, E], 1) is Step.RETRY
    assert next_step([STOP, E, E], 1) is Step.GIVE_UP
    assert next_step([E], 0) is Step.GIVE_UP
    assert next_step([L], 1) is Step.RETRY
    assert next_step([L, STOP, L], 1) is Step.GIVE_UP
    assert next_step([E, E], 2) is Step.RETRY
    assert next_step([E, E, E], 2) is Step.GIVE_UP  # the first attempt and two retries


def test_an_interrupted_configuration_that_then_fails_is_retried_once_not_forever(
    tmp_path, settings, storage
):
    study = create_or_resume(spec_of(tmp_path, GRID, "grid"), settings, n_trials=1, storage=storage)
    stop = threading.Event()

    def script(attempt, n):
        if n == 1:
            stop.set()  # Ctrl-C during the first attempt: it stops after its epoch
            return AttemptReport(Outcome.INTERRUPTED, reason="stopped on request after epoch 1")
        return AttemptReport(Outcome.ERROR, reason="out of memory")

    runner = FakeRunner(script)
    assert worker(study, runner, stop_event=stop).run() == 1
    assert worker(study, runner).run() == 2  # the resume fails, its one retry fails too

    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert [t.user_attrs[OUTCOME] for t in trials] == ["interrupted", "error", "error"]
    assert [t.system_attrs.get(RETRY_OF) for t in trials] == [None, 0, 0]
    assert trials[-1].user_attrs["reason"] == "out of memory"
    # The retries resume the first attempt's checkpoint and the latest run.
    assert [a.root for a in runner.attempts] == [0, 0, 0]
    assert [a.previous_run for a in runner.attempts] == [None, "run-0", "run-1"]
    # Nothing is left queued, and nothing more is wanted: the point is recorded failed.
    assert not wants_more(trials, 1)
    assert worker(study, runner).run() == 0


def test_a_lost_worker_is_retried_then_given_up(storage):
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr(RUN_ID, "run-0")
    study.tell(trial, state=TrialState.FAIL)  # as Optuna's heartbeat check leaves it: no word
    assert settle(study, 0, max_retries=1) is Step.RETRY
    retry = study.get_trials()[1]
    assert retry.state == TrialState.WAITING and retry.params == study.trials[0].params
    assert retry.user_attrs == {PREVIOUS_RUN: "run-0"}  # no outcome of the lost attempt
    assert settle(study, 0, max_retries=1) is None  # already decided: no second copy
    again = study.ask()
    assert again.number == 1
    study.tell(again, state=TrialState.FAIL)
    assert settle(study, 1, max_retries=1) is Step.GIVE_UP
    assert len(study.trials) == 2


def test_a_hard_stop_is_queued_again_once_by_settle_all(storage):
    study = optuna.create_study(storage=storage)
    for _ in range(2):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr(OUTCOME, "interrupted")
        study.tell(trial, state=TrialState.FAIL)
    assert settle_all(study, 1) == 2
    assert settle_all(study, 1) == 0  # a second look (a second worker) queues nothing more
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.system_attrs[RETRY_OF] for t in waiting) == [0, 1]


def test_a_trial_interrupted_on_request_is_resumed_first_by_the_next_run(
    tmp_path, settings, storage
):
    spec = spec_of(tmp_path, GRID, "grid")
    study = create_or_resume(spec, settings, storage=storage)  # 6 grid points queued: 0-5
    stop = threading.Event()

    def ctrl_c(attempt, n):
        stop.set()
        return AttemptReport(Outcome.INTERRUPTED, reason="stopped on request")

    assert worker(study, FakeRunner(ctrl_c), stop_event=stop).run() == 1
    trials = study.get_trials()
    assert [t.number for t in trials if t.state == TrialState.WAITING] == [1, 2, 3, 4, 5, 6]
    assert resumes_first(trials) == [1, 2, 3, 4, 5]  # trial 6 resumes trial 0

    settle_all(study, 1)  # the next run, before its workers start
    assert resumes_first(study.get_trials()) == []
    assert put_resumes_first(study) == 0  # a second look moves nothing
    runner = FakeRunner()
    worker(study, runner).run()
    assert (runner.attempts[0].number, runner.attempts[0].root) == (6, 0)  # the resume first
    # then the points that never started, in their grid order
    assert [a.params["dropout"] for a in runner.attempts] == list("abcdef")
    counts = summarize(study)
    assert counts["complete"] == 6 and counts["configurations"] == 6
    assert counts["skipped"] == 5  # the old places in the queue, counted for nothing


def test_resumes_first_leaves_a_queue_without_resumes_and_retries_of_errors_alone(storage):
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr(OUTCOME, Outcome.ERROR.value)
    study.tell(trial, state=TrialState.FAIL)
    study.enqueue_trial({"x": 0.5})
    settle(study, 0, 1)  # a retry of an error: queued behind, and stays there
    assert resumes_first(study.get_trials()) == []


# --- n_trials is the study's total --------------------------------------------------------


def test_n_trials_is_the_total_of_a_grid_and_a_rerun_completes_it(tmp_path, settings, storage):
    spec = spec_of(tmp_path, GRID, "grid")
    study = create_or_resume(spec, settings, n_trials=2, storage=storage)
    runner = FakeRunner()
    assert worker(study, runner).run() == 2
    assert len(study.trials) == 2 and runner.left == [True]

    study = create_or_resume(spec, settings, n_trials=4, storage=storage)
    assert worker(study, runner).run() == 2
    create_or_resume(spec, settings, n_trials=4, storage=storage)
    assert worker(study, runner).run() == 0  # complete: a re-run adds nothing
    assert len(study.trials) == 4 and len(set(points(study))) == 4

    create_or_resume(spec, settings, storage=storage)  # the file's total: every grid point
    assert worker(study, runner).run() == 2
    assert len(set(points(study))) == 6


def test_enqueued_trials_count_toward_n_trials_and_tpe_samples_the_rest(
    tmp_path, settings, storage
):
    spec = spec_of(tmp_path, ENQUEUED, "enq")
    study = create_or_resume(spec, settings, n_trials=2, storage=storage)
    assert worker(study, FakeRunner()).run() == 2  # not the three the file lists
    study = create_or_resume(spec, settings, n_trials=5, storage=storage)
    assert worker(study, FakeRunner()).run() == 3
    done = points(study)
    assert len(done) == 5 and len(set(done)) == 5
    listed = [tuple(sorted(t.items())) for t in spec.trials]
    assert done[:3] == listed  # the listed trials first, in order


def test_failed_and_interrupted_attempts_do_not_eat_n_trials(tmp_path, settings, storage):
    study = create_or_resume(spec_of(tmp_path, TPE, "tpe"), settings, n_trials=3, storage=storage)
    outcomes = iter(
        [Outcome.ERROR, Outcome.COMPLETE, Outcome.INTERRUPTED, Outcome.COMPLETE, Outcome.COMPLETE]
    )
    runner = FakeRunner(lambda attempt, n: AttemptReport(next(outcomes), reason="x"))
    assert worker(study, runner).run() == 5
    counts = summarize(study)
    assert counts["complete"] == 3 and counts["fail"] == 2 and counts["configurations"] == 3


def test_workers_racing_for_the_last_slot_admit_the_lowest_trial_number(storage):
    study = optuna.create_study(storage=storage)
    for x in (0.1, 0.2, 0.3):
        study.enqueue_trial({"x": x})
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, 1.0)
    late = [study.ask() for _ in range(2)]  # two workers ask at once for the fourth slot
    for t in late:
        t.suggest_float("x", 0, 1)
    trials = study.get_trials()
    first, second = (trials[t.number] for t in late)
    assert admission(trials, first, first.params, target=4) is None
    assert admission(trials, second, second.params, target=4) == "past the study's n_trials (4)"
    assert admission(trials, first, {"x": 0.2}, target=None) == "duplicate of trial 1"


# --- no duplicates across processes and resumes -------------------------------------------


def test_two_processes_and_a_resume_never_propose_the_same_point(tmp_path, settings, storage):
    spec = spec_of(tmp_path, TPE, "tpe")
    study = create_or_resume(spec, settings, n_trials=8, storage=storage)
    # Two worker processes (two samplers built from the same file) take turns...
    a, b = worker(study, FakeRunner()), worker(study, FakeRunner())
    for _ in range(2):
        a.max_trials, b.max_trials = a.trained + 1, b.trained + 1
        a.run()
        b.run()
    # ...then the sweep is resumed by a new process: all still in TPE's random start-up.
    assert worker(study, FakeRunner()).run() == 4
    proposed = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(proposed) == 8 and len(set(proposed)) == 8

    # One seeded process is reproducible: a fresh study proposes the same sequence.
    again = create_or_resume(spec, settings, n_trials=8, storage=optuna.storages.InMemoryStorage())
    worker(again, FakeRunner()).run()
    assert [t.params for t in again.get_trials()] == [t.params for t in study.get_trials()]


DISCRETE = """
name: discrete
base: {arch: C, epochs: 2}
space:
  batch_size: {type: categorical, choices: [32, 64]}
  optimizer: {type: categorical, choices: [sgd, adam]}
  momentum: {type: categorical, choices: [0.0, 0.9], when: {optimizer: sgd}}
sampler: {type: tpe, seed: 0, n_startup_trials: 2}
n_trials: 10
default_budget: smoke
"""


def test_a_discrete_space_trains_each_point_once_and_then_stops(tmp_path, settings, storage):
    spec = spec_of(tmp_path, DISCRETE, "discrete")
    assert len(space_points(spec)) == 6  # sgd x 2 momenta + adam, times 2 batch sizes
    study = create_or_resume(spec, settings, storage=storage)
    runner = FakeRunner()
    assert worker(study, runner).run() == 6  # n_trials 10, but the space holds 6 points
    trained = [tuple(sorted(a.params.items())) for a in runner.attempts]
    assert len(set(trained)) == 6
    skipped = [t for t in study.trials if t.user_attrs.get(OUTCOME) == "skipped"]
    assert all(t.user_attrs["reason"].startswith("duplicate of trial") for t in skipped)
    assert len(lineages(study.trials)) == 6 and runner.left == [True]


def test_timeout_bounds_one_invocation_and_a_timeout_alone_is_enough(tmp_path, settings, storage):
    import time

    # A file with a time limit and no total: the study runs until each invocation's limit.
    spec = spec_of(tmp_path, TPE.replace("n_trials: 4", "timeout: 1h"), "tpe")
    study = create_or_resume(spec, settings, timeout=5, storage=storage)
    loaded, plan = load_for_worker(study.study_name, storage)
    assert plan.n_trials is None and plan.timeout == 3600  # --timeout 5 is not the study's
    assert Worker(loaded, plan, FakeRunner(), max_retries=1, deadline=time.time() - 1).run() == 0
    assert Worker(loaded, plan, FakeRunner(), max_retries=1, max_trials=3).run() == 3


def test_a_rerun_gives_a_configuration_that_failed_for_good_its_retries_anew(
    tmp_path, settings, storage
):
    spec = spec_of(tmp_path, GRID, "grid")
    study = create_or_resume(spec, settings, n_trials=2, storage=storage)

    def script(attempt, n):
        diverges = attempt.params["dropout"] == "b"
        return AttemptReport(Outcome.DIVERGED if diverges else Outcome.ERROR, reason="x")

    broken = FakeRunner(script)
    assert worker(study, broken).run() == 3  # "a" and its one retry; "b" diverges
    assert worker(study, broken).run() == 0  # within a run, a failure is final
    # The next sweep (or study create) tries "a" again with its retry, not "b".
    assert settle_all(study, 1) == 1
    assert worker(study, FakeRunner()).run() == 1
    states = [(t.params["dropout"], t.state.name) for t in study.trials]
    assert states == [("a", "FAIL"), ("b", "FAIL"), ("a", "FAIL"), ("a", "COMPLETE")]


# --- failures that would fail again ------------------------------------------------------


def test_a_configuration_training_refuses_is_terminal_and_not_rearmed(
    tmp_path, settings, storage, capsys
):
    from fer_sweep.errors import UserError
    from fer_sweep.outcomes import STATUS, outcome_of

    refusal = UserError("a step schedule with 2 drop(s) needs more than 1 update(s)")
    assert outcome_of(refusal) is Outcome.REFUSED
    assert STATUS[Outcome.REFUSED] == (TrialState.FAIL, "FAILED")
    assert next_step([Outcome.REFUSED], 5) is Step.DONE
    study = create_or_resume(spec_of(tmp_path, GRID, "grid"), settings, n_trials=2, storage=storage)

    def script(attempt, n):
        if attempt.params["dropout"] == "a":
            return AttemptReport(outcome_of(refusal), reason=str(refusal))
        return AttemptReport(Outcome.COMPLETE)

    runner = FakeRunner(script)
    assert worker(study, runner, max_retries=3).run() == 2  # no retry of "a"
    assert settle_all(study, 3) == 0  # and a re-run does not give it retries anew
    assert worker(study, runner, max_retries=3).run() == 0
    said = capsys.readouterr().err
    assert said.count("trial 0 refused") == 1 and "needs more than 1 update" in said
    assert [t.user_attrs[OUTCOME] for t in study.trials] == ["refused", "complete"]


def test_a_run_in_which_no_attempt_completed_names_the_reasons(storage):
    from fer_sweep.lifecycle._sweep import failures_of_this_run

    study = optuna.create_study(storage=storage)
    done = study.ask()
    study.tell(done, 1.0)
    before = {t.number for t in study.trials}
    for outcome, reason in (("refused", "needs more than 1 update"), ("error", "out of memory")):
        trial = study.ask()
        trial.set_user_attr(OUTCOME, outcome)
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL)
    failed = failures_of_this_run(study.trials, before)
    assert failed == ["trial 1 refused: needs more than 1 update", "trial 2 error: out of memory"]
    assert failures_of_this_run(study.trials, set()) == []  # trial 0 completed in that run
    assert failures_of_this_run(study.trials, {0, 1, 2}) == []  # nothing ran: a finished study


# --- work folders -------------------------------------------------------------------------


def test_a_recreated_study_or_another_storage_never_shares_a_work_folder(tmp_path, settings):
    from fer_sweep.lifecycle._study import work_folder

    spec = spec_of(tmp_path, GRID, "grid")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = create_or_resume(spec, settings, storage=optuna.storages.RDBStorage(url))
    folder = work_folder(first, 0)
    assert folder.startswith("grid-smoke-") and folder.endswith("/trial-0000")
    again = create_or_resume(spec, settings, storage=optuna.storages.RDBStorage(url))
    assert work_folder(again, 0) == folder  # the same study resumed: the same folder
    optuna.delete_study(study_name=first.study_name, storage=url)  # as study.py advises
    recreated = create_or_resume(spec, settings, storage=optuna.storages.RDBStorage(url))
    other = f"sqlite:///{tmp_path / 'b.db'}"  # a fresh database beside the same mlruns/
    elsewhere = create_or_resume(spec, settings, storage=optuna.storages.RDBStorage(other))
    assert len({folder, work_folder(recreated, 0), work_folder(elsewhere, 0)}) == 3


def test_a_configuration_with_its_outcome_lets_its_work_folder_go(tmp_path, settings, storage):
    study = create_or_resume(spec_of(tmp_path, GRID, "grid"), settings, n_trials=3, storage=storage)
    outcomes = iter([Outcome.COMPLETE, Outcome.ERROR, Outcome.INTERRUPTED])
    done = []

    class Recording(FakeRunner):
        def on_done(self, trial):
            done.append(trial.number)

    stop = threading.Event()

    def script(attempt, n):
        outcome = next(outcomes)
        if outcome is Outcome.INTERRUPTED:
            stop.set()
        return AttemptReport(outcome, reason="x")

    worker(study, Recording(script), stop_event=stop).run()
    # Trial 0 completed; trial 1 failed and is retried (trial 2), which was interrupted:
    # only the finished configuration's folder may go.
    assert done == [0]


def test_a_full_disk_stops_the_worker_in_one_line_and_the_attempt_resumes(
    tmp_path, settings, storage
):
    """ENOSPC injected where an attempt writes (the runner's report of it): the worker stops
    instead of failing every other trial on the same disk, nothing uses up a retry, and the
    next run resumes the attempt."""
    import errno

    from fer_sweep.errors import StoreError, disk_full, store_cause
    from fer_sweep.outcomes import outcome_of

    enospc = OSError(errno.ENOSPC, "No space left on device", "/mlruns/work/x/model.keras")
    assert outcome_of(enospc) is Outcome.INTERRUPTED  # resumable, costs no retry
    try:  # SQLite's words, under what MLflow and SQLAlchemy wrap them in
        try:
            raise RuntimeError("(sqlite3.OperationalError) database or disk is full")
        except RuntimeError as inner:
            raise ValueError("Response exceeding max length") from inner
    except ValueError as wrapped:
        assert disk_full(wrapped) and store_cause(wrapped) == "the disk is full"

    study = create_or_resume(spec_of(tmp_path, GRID, "grid"), settings, n_trials=3, storage=storage)

    def full(attempt, n):
        why = f"trial {attempt.number}: the disk is full ({enospc})"
        return AttemptReport(Outcome.INTERRUPTED, halt=True, reason=why)

    with pytest.raises(StoreError, match="trial 0: the disk is full.*once there is space"):
        worker(study, FakeRunner(full), max_retries=0).run()
    first = study.get_trials()[0]
    assert first.state == TrialState.FAIL and first.user_attrs[OUTCOME] == "interrupted"
    assert len([t for t in study.get_trials() if t.state != TrialState.WAITING]) == 1
    runner = FakeRunner()
    assert worker(study, runner, max_retries=0).run() == 3  # space is back: all three run
    (resumed,) = [a for a in runner.attempts if a.root == 0]
    assert resumed.previous_run == "run-0" and resumed.number == 3


LAST = """
name: last
base: {arch: C, epochs: 2}
space:
  dropout:
    type: categorical
    choices:
      "0.8 FC only": {conv_dropout: 0.0, fc_dropout: 0.8}
  batch_size: {type: categorical, choices: [32]}
sampler: grid
objective: {metric: val_accuracy, at: last}
default_budget: smoke
"""


def test_the_dashboard_names_the_objective_and_sees_what_a_named_arm_sets(
    tmp_path, settings, storage
):
    from fer_sweep import metric_names as names

    study = create_or_resume(spec_of(tmp_path, GRID, "grid"), settings, n_trials=2, storage=storage)
    outcomes = iter([Outcome.ERROR, Outcome.COMPLETE, Outcome.COMPLETE])
    worker(study, FakeRunner(lambda attempt, n: AttemptReport(next(outcomes)))).run()
    # What optuna-dashboard and load_study users read: the objective by its one name...
    loaded = optuna.load_study(study_name="grid-smoke", storage=storage)
    assert loaded.metric_names == [names.PUBLIC_BEST] == [names.objective("best")]
    assert f"value_{names.PUBLIC_BEST}" in loaded.trials_dataframe().columns
    # ...and the config values behind each arm's label, a failed attempt's too.
    arms = {"a": 0.0, "b": 0.1}
    for t in loaded.trials:
        assert (
            t.user_attrs["conv_dropout"] == t.user_attrs["fc_dropout"] == arms[t.params["dropout"]]
        )
    assert {t.state for t in loaded.trials} == {TrialState.FAIL, TrialState.COMPLETE}

    other = create_or_resume(spec_of(tmp_path, LAST, "last"), settings, storage=storage)
    worker(other, FakeRunner()).run()
    (t,) = optuna.load_study(study_name="last-smoke", storage=storage).trials
    assert optuna.load_study(study_name="last-smoke", storage=storage).metric_names == [
        names.PUBLIC_FINAL
    ]
    # The resolved values only: the arm's two keys and the plain choice, not the whole config.
    assert {k: t.user_attrs[k] for k in ("conv_dropout", "fc_dropout", "batch_size")} == {
        "conv_dropout": 0.0,
        "fc_dropout": 0.8,
        "batch_size": 32,
    }
    assert "lr" not in t.user_attrs and "epochs" not in t.user_attrs
