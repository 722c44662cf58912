"""The decisions written to the study: requeued trials, settled lineages, resumes first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fer_sweep.lifecycle._decisions import Step, next_step, resumes_first
from fer_sweep.lifecycle._study import (
    FRESH,
    HISTORY,
    OUTCOME,
    PREVIOUS_RUN,
    REASON,
    RETRY_OF,
    RUN_ID,
    lineages,
    outcome_of_trial,
    root_of,
    skipped,
)
from fer_sweep.outcomes import Outcome


def requeue(study: optuna.Study, lineage: Sequence[FrozenTrial], *, fresh: bool = False) -> None:
    """Queue the configuration of ``lineage`` again, as a retry of its first attempt.

    Only what belongs to the configuration is written: its params, its lineage and the
    latest MLflow run to resume from; never an attempt's outcome. ``fresh`` gives it its
    retries anew (a later invocation tries a configuration that failed before).
    """
    last = lineage[-1]
    system_attrs: dict[str, Any] = {
        RETRY_OF: root_of(last),
        HISTORY: [t.number for t in lineage],
    }
    if fresh:
        system_attrs[FRESH] = True
    if "fixed_params" in last.system_attrs:
        system_attrs["fixed_params"] = last.system_attrs["fixed_params"]
    runs = [t.user_attrs.get(RUN_ID) or t.user_attrs.get(PREVIOUS_RUN) for t in lineage]
    previous = next((r for r in reversed(runs) if r), None)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=last.params,
            distributions=last.distributions,
            user_attrs={PREVIOUS_RUN: previous} if previous else {},
            system_attrs=system_attrs,
        )
    )


def settle(
    study: optuna.Study, number: int, max_retries: int, *, rearm: bool = False
) -> Step | None:
    """Decide what becomes of trial ``number``'s configuration, and queue it if it goes on
    (``rearm``: also when it has used up its retries, with its retries anew).

    None when there is nothing to decide (the lineage's latest attempt is not a failure of
    its own, or it was skipped).
    """
    trials = study.get_trials(deepcopy=False)
    mine = next(t for t in trials if t.number == number)
    if skipped(mine):
        return None
    lineage = lineages(trials)[root_of(mine)]
    if lineage[-1].number != number:
        return None  # already queued again (by another worker's look at it)
    # Retries are counted from the latest fresh start (see settle_all).
    start = max((i for i, t in enumerate(lineage) if t.system_attrs.get(FRESH)), default=0)
    outcomes = [outcome_of_trial(t) for t in lineage[start:]]
    if outcomes[-1] is None:
        return None
    step = next_step(outcomes, max_retries)
    if step in (Step.RESUME, Step.RETRY):
        requeue(study, lineage)
    elif step is Step.GIVE_UP and rearm:
        requeue(study, lineage, fresh=True)
    return step


def settle_all(study: optuna.Study, max_retries: int) -> int:
    """At the start of a sweep (or ``study create``), from one process before workers start:
    queue again what a worker stopped at once (a second Ctrl-C, a kill between an attempt
    and its decision) left undecided, and each configuration that failed for good in an
    earlier invocation, with its retries anew: re-running a sweep completes it. Diverged
    configurations stay failed (they would diverge again). Resumes of interrupted trials are
    then put first in the queue (:func:`put_resumes_first`). Returns how many were queued."""
    queued = 0
    for lin in lineages(study.get_trials(deepcopy=False)).values():
        if lin[-1].state == TrialState.FAIL:
            step = settle(study, lin[-1].number, max_retries, rearm=True)
            queued += step in (Step.RESUME, Step.RETRY, Step.GIVE_UP)
    put_resumes_first(study)
    return queued


def put_resumes_first(study: optuna.Study) -> int:
    """Move the queued trials :func:`resumes_first` names behind the resumes: each is queued
    again, as it was, at the end, and the old place is recorded as a skipped attempt (so it
    counts for nothing). A trial a worker took meanwhile is left alone. Returns how many."""
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    storage = study._storage  # Optuna has no public way to take a queued trial out
    moved = 0
    for number in resumes_first(trials):
        t = by_number[number]
        # Taking it (WAITING -> RUNNING) is atomic: a worker that popped it first wins.
        if not storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                user_attrs=dict(t.user_attrs),
                system_attrs=dict(t.system_attrs),
            )
        )
        storage.set_trial_user_attr(t._trial_id, OUTCOME, Outcome.SKIPPED.value)
        storage.set_trial_user_attr(
            t._trial_id, REASON, "queued again behind the resume of an interrupted trial"
        )
        storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        moved += 1
    return moved
