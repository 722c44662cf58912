"""One worker: runs a study's trials, one at a time, until the study has its ``n_trials``.

The loop asks the pure decisions (:mod:`._decisions`) what to do next, writes what they
decide through :mod:`._settle`, and hands each attempt to a :class:`Runner`: the real one
trains and tracks it (:class:`~._attempt.TrainingRunner`), tests hand in a fake. Proposals
come from :func:`~fer_sweep.search.worker_sampler`, which seeds every trial's sampler from
``(the sweep file's seed, the trial's number)``: one seeded process is reproducible, and no
two processes, and no resumed sweep, repeat each other's proposals.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from fer_sweep.config import TrainConfig, make_config
from fer_sweep.errors import StoreError, UserError, disk_full, first_line
from fer_sweep.lifecycle._decisions import Step, admission, wants_more
from fer_sweep.lifecycle._settle import settle
from fer_sweep.lifecycle._study import (
    OUTCOME,
    PREVIOUS_RUN,
    REASON,
    StudyPlan,
    lineages,
    params_of,
    plan_of,
    root_of,
    same_point,
    space_points,
)
from fer_sweep.outcomes import Outcome
from fer_sweep.search import make_pruner, suggest, trial_config_values, trial_seed, worker_sampler

# A worker that skips this many proposals in a row (duplicates, past n_trials) stops: the
# sampler has nothing new to offer. Finite spaces replace duplicates, so this is a backstop.
MAX_SKIPS_IN_A_ROW = 100


# --- one attempt --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One attempt at a trial: what to train and where it stands in its lineage."""

    study: str
    number: int  # this attempt's trial number
    root: int  # the lineage's first attempt (names the checkpoint folder)
    params: dict[str, Any]  # the Optuna params (labels of named arms)
    config: TrainConfig
    budget: str
    objective_at: str  # "best" or "last": which epoch's PublicTest accuracy is the value
    previous_run: str | None = None  # the MLflow run to resume from
    seeds: int = 1  # seeds to train (config.for_seed(k)); the value is their mean

    @property
    def retry_of(self) -> int | None:
        return None if self.root == self.number else self.root


@dataclass
class AttemptReport:
    """How an attempt ended: its outcome, its value (complete only), one line of reason and
    the user attributes to record on the trial."""

    outcome: Outcome
    value: float | None = None
    reason: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    halt: bool = False  # this machine cannot go on (its disk is full): the worker stops


class Runner:
    """Runs attempts for a worker (the real one trains and tracks: ``TrainingRunner``)."""

    def run(self, attempt: Attempt, trial: optuna.Trial) -> AttemptReport:
        raise NotImplementedError

    def on_lost(self, trial: FrozenTrial) -> None:
        """``trial``'s worker died: close what it left open."""

    def on_done(self, trial: FrozenTrial) -> None:
        """``trial``'s configuration has its outcome (complete, pruned, diverged, refused):
        nothing will resume it, so what it kept for a resume may go."""

    def on_leave(self, study: optuna.Study, *, done: bool) -> None:
        """The worker leaves the study (``done``: nothing is left to start)."""


class AttemptFailed(Exception):
    """An attempt ended without a result (its reason is the message)."""


# --- the worker ---------------------------------------------------------------------------


class Worker:
    """Runs a study's trials until it has its ``n_trials``, time runs out or it is stopped.

    Args:
        study: the study, loaded with :func:`worker_sampler` as its sampler.
        plan: the study's plan (:func:`fer_sweep.lifecycle.plan_of`).
        runner: what runs one attempt.
        max_retries: how often a failed configuration is tried again.
        stop_event: set it to stop after the current attempt (which stops after its epoch).
        max_trials: leave after training this many attempts.
        deadline: a ``time.time()`` after which no attempt starts.
    """

    def __init__(
        self,
        study: optuna.Study,
        plan: StudyPlan,
        runner: Runner,
        *,
        max_retries: int,
        stop_event: threading.Event | None = None,
        max_trials: int | None = None,
        deadline: float | None = None,
    ) -> None:
        self.study = study
        self.plan = plan
        self.runner = runner
        self.max_retries = max_retries
        self.stop_event = stop_event or threading.Event()
        self.max_trials = max_trials
        self.deadline = deadline
        points = space_points(plan.spec)
        self.points = points
        self.trained = 0
        self.skips_in_a_row = 0
        self.current: int | None = None  # the trial this worker runs now
        self.halted: str | None = None  # why the worker stopped on its own (a full disk)

    def run(self) -> int:
        """Run attempts until there is nothing left; returns how many this worker trained."""
        done = False
        try:
            while self._more_to_do():
                self.study.optimize(
                    self.objective,
                    n_trials=1,
                    catch=(AttemptFailed,),
                    callbacks=[self._after],
                    gc_after_trial=True,
                )
            done = not self._wants_more()
        except KeyboardInterrupt:
            # A hard stop: the attempt is recorded failed; queue it to resume (best effort).
            if self.current is not None:
                with suppress(Exception):
                    settle(self.study, self.current, self.max_retries)
            raise
        except Exception as err:
            if not disk_full(err):
                raise
            # The study's own storage cannot be written: nothing can be recorded, so stop.
            raise StoreError(
                f"Optuna storage: the disk is full ({first_line(err)}); "
                "re-run the same command once there is space"
            ) from None
        finally:
            self.runner.on_leave(self.study, done=done)
        if self.halted:
            raise StoreError(
                f"{self.halted}; the trial resumes from its last checkpoint "
                "when the same command runs again once there is space"
            )
        return self.trained

    def on_stale(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna found ``trial``'s worker dead (and marked it failed): close and decide."""
        self.runner.on_lost(trial)
        step = settle(study, trial.number, self.max_retries)
        what = "retrying it" if step is Step.RETRY else "giving up on it (retries used up)"
        print(f"trial {trial.number}: its worker stopped beating; {what}", file=sys.stderr)

    def _wants_more(self) -> bool:
        trials = self.study.get_trials(deepcopy=False)
        n_points = None if self.points is None else len(self.points)
        return wants_more(trials, self.plan.n_trials, n_points)

    def _more_to_do(self) -> bool:
        if self.stop_event.is_set():
            return False
        if self.deadline is not None and time.time() >= self.deadline:
            return False
        if self.max_trials is not None and self.trained >= self.max_trials:
            return False
        if self.skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            print(
                f"study {self.study.study_name}: the sampler proposed {self.skips_in_a_row} "
                "points in a row that were already tried; stopping",
                file=sys.stderr,
            )
            return False
        # A dead worker's trial is only noticed when a trial starts; look now, so that a worker
        # that joins when the stale trial is the only one left still runs it.
        optuna.storages.fail_stale_trials(self.study)
        return self._wants_more()

    def objective(self, trial: optuna.Trial) -> float:
        """One attempt: sample (or take the queued point), admit, train, record."""
        self.current = trial.number
        spec, plan = self.plan.spec, self.plan
        sampled = suggest(spec, trial)
        trials = self.study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        reason = admission(trials, me, trial.params, plan.n_trials)
        if reason is not None:
            self._skip(trial, reason, trials)
        self.skips_in_a_row = 0
        try:
            values = trial_config_values(spec, sampled, spec.budget(plan.budget_name))
            config = make_config(values, origin=f"trial {trial.number}")
        except UserError as err:
            print(f"trial {trial.number} refused: {err}", file=sys.stderr)
            self._record(trial, AttemptReport(Outcome.REFUSED, reason=str(err)))
            raise AttemptFailed(str(err)) from None
        # What a named arm hides ("dropout: 0.8 FC only"), for optuna-dashboard and
        # load_study users: before training, so that a failed attempt shows it too.
        for key, value in resolved_params(sampled, config).items():
            trial.set_user_attr(key, value)
        attempt = Attempt(
            study=self.study.study_name,
            number=trial.number,
            root=root_of(me),
            params=dict(trial.params),
            config=config,
            budget=plan.budget_name,
            objective_at=spec.objective_at,
            previous_run=me.user_attrs.get(PREVIOUS_RUN),
            seeds=plan.seeds,
        )
        self.trained += 1
        try:
            report = self.runner.run(attempt, trial)
        except KeyboardInterrupt:
            with suppress(Exception):
                self._record(trial, AttemptReport(Outcome.INTERRUPTED, reason="stopped at once"))
            raise
        if report.halt:
            self.halted = report.reason
            self.stop_event.set()
        self._record(trial, report)
        if report.outcome is Outcome.COMPLETE:
            return float(report.value)
        if report.outcome is Outcome.PRUNED:
            raise optuna.TrialPruned(report.reason)
        if report.outcome is not Outcome.INTERRUPTED:
            what = {Outcome.REFUSED: "refused (not retried: it would be refused again)"}.get(
                report.outcome, report.outcome.value
            )
            print(f"trial {trial.number} {what}: {report.reason}", file=sys.stderr)
        raise AttemptFailed(report.reason)

    def _skip(self, trial: optuna.Trial, reason: str, trials: Sequence[FrozenTrial]) -> None:
        self.skips_in_a_row += 1
        self._record(trial, AttemptReport(Outcome.SKIPPED, reason=reason))
        if reason.startswith("duplicate") and self.points is not None:
            # Offer the sampler's next draw a point nobody holds yet, chosen by the trial's
            # seed; with none left, wants_more ends the study.
            have = [params_of(lin[0]) for lin in lineages(trials).values()]
            fresh = [p for p in self.points if not any(same_point(p, h) for h in have)]
            if fresh:
                rng = random.Random(trial_seed(self.plan.spec.sampler["seed"], trial.number))
                self.study.enqueue_trial(rng.choice(fresh), skip_if_exists=False)
        raise AttemptFailed(reason)

    def _record(self, trial: optuna.Trial, report: AttemptReport) -> None:
        for key, value in {
            **report.attrs,
            OUTCOME: report.outcome.value,
            REASON: report.reason,
        }.items():
            trial.set_user_attr(key, value)

    def _after(self, study: optuna.Study, trial: FrozenTrial) -> None:
        step = settle(study, trial.number, self.max_retries)
        if step is Step.DONE:
            self.runner.on_done(trial)
        if step is Step.RETRY:
            print(f"trial {trial.number}: trying its configuration again", file=sys.stderr)
        elif step is Step.GIVE_UP:
            print(
                f"trial {trial.number}: failed {self.max_retries + 1} time(s); recorded as "
                f"failed: {trial.user_attrs.get(REASON, '')}",
                file=sys.stderr,
            )


def resolved_params(sampled: Mapping[str, Any], config: TrainConfig) -> dict[str, Any]:
    """The config values the trial's parameters stand for (``sampled``: the keys
    :func:`fer_sweep.search.suggest` returns), as ``config`` holds them once its budget is
    applied, JSON-ready (tuples as lists) for Optuna's storage."""
    values = config.model_dump(mode="json")
    return {key: values[key] for key in sampled}


def load_for_worker(
    study_name: str, storage: optuna.storages.BaseStorage, plan: StudyPlan | None = None
) -> tuple[optuna.Study, StudyPlan]:
    """The study with the sampler and pruner its file asks for, and its plan.

    ``plan``, when the caller has already read it, saves loading the study a second time.
    """
    if plan is None:
        plan = plan_of(optuna.load_study(study_name=study_name, storage=storage))
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=worker_sampler(plan.spec),
        pruner=make_pruner(plan.spec),
    )
    return study, plan
