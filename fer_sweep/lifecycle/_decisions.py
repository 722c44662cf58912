"""A worker's decisions, as small pure functions over what the study's storage holds.

Tests drive them with in-memory Optuna and a fake trainer:

- :func:`wants_more`: is there anything left to start? Distinct configurations (lineages, see
  :mod:`fer_sweep.lifecycle._study`) count toward ``n_trials``, retries do not; a discrete
  space whose every point has been tried is done.
- :func:`admission`: may a fresh trial train? Not when it is a duplicate of a point another
  trial holds, nor when it is past ``n_trials`` (workers that race for the last slot).
- :func:`resumes_first`: which queued trials go behind the resumes of interrupted trials, so
  the next run finishes a trial cut short before it starts new ones.
- :func:`next_step`: after an attempt, from that attempt's own outcome and its lineage's
  earlier ones: done, resume (interrupted on request), retry (a failure, at most
  ``max_retries`` times) or give up (recorded FAIL with its reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from fer_sweep.lifecycle._study import (
    lineages,
    outcome_of_trial,
    params_of,
    root_of,
    same_point,
    skipped,
    started,
)
from fer_sweep.outcomes import Outcome


class Step(StrEnum):
    """What becomes of a configuration after one of its attempts."""

    DONE = "done"  # it has its result: complete, pruned, diverged, refused (or never trained)
    RESUME = "resume"  # stopped on request: queued again, resumes from its checkpoint
    RETRY = "retry"  # failed (an error, a lost worker): queued again
    GIVE_UP = "give up"  # failed more than max_retries times: recorded FAIL with its reason


def next_step(outcomes: Sequence[Outcome], max_retries: int) -> Step:
    """The decision after a configuration's latest attempt (``outcomes``: its attempts' own
    outcomes, oldest first). Each attempt speaks for itself: an earlier interruption does
    not make a later error resumable, and only errors and lost workers use up retries."""
    last = outcomes[-1]
    if last in (
        Outcome.COMPLETE,
        Outcome.PRUNED,
        Outcome.DIVERGED,
        Outcome.REFUSED,
        Outcome.SKIPPED,
    ):
        return Step.DONE
    if last is Outcome.INTERRUPTED:
        return Step.RESUME
    failures = sum(o in (Outcome.ERROR, Outcome.LOST) for o in outcomes)
    return Step.RETRY if failures <= max_retries else Step.GIVE_UP


def wants_more(
    trials: Sequence[FrozenTrial], target: int | None, n_points: int | None = None
) -> bool:
    """Whether a worker should start another trial.

    Args:
        trials: every trial of the study.
        target: the study's ``n_trials`` (None: no total, run until stopped or timed out).
        n_points: how many points a discrete space has (None: endless).
    """
    lins = lineages(trials).values()
    if any(len(lin) > 1 and lin[-1].state == TrialState.WAITING for lin in lins):
        return True  # a retry or a resume is queued: its configuration already has its slot
    queued = any(lin[-1].state == TrialState.WAITING for lin in lins)
    if n_points is not None and len(lins) >= n_points and not queued:
        return False  # every point of the space has been tried
    return target is None or sum(started(lin) for lin in lins) < target


def admission(
    trials: Sequence[FrozenTrial], me: FrozenTrial, params: Mapping[str, Any], target: int | None
) -> str | None:
    """Why the fresh trial ``me`` (with the sampled ``params``) must not train, or None.

    A retry is always admitted. A fresh trial is not when another trial holds the same
    point, nor when the configurations created before it already fill ``target``: of
    workers racing for the last slot, the lowest trial number wins.
    """
    if root_of(me) != me.number:
        return None
    others = lineages(t for t in trials if t.number != me.number)
    ahead = sum(root < me.number for root in others)
    if target is not None and ahead >= target:
        return f"past the study's n_trials ({target})"
    for root, lin in others.items():
        if same_point(params_of(lin[0]), params):
            return f"duplicate of trial {root}"
    return None


def resumes_first(trials: Sequence[FrozenTrial]) -> list[int]:
    """The queued trials, in order, that must move behind the queued resumes.

    A resume (the queued next attempt of a configuration interrupted on request) is put at the
    end of Optuna's queue, which a worker takes in trial-number order: behind every grid
    point still waiting, it would start last, hours later. So every queued trial that is not
    a resume and comes before the last resume moves behind it.
    """
    lins = lineages(trials)

    def resumes(t: FrozenTrial) -> bool:
        lin = lins.get(root_of(t), [])
        i = next((i for i, a in enumerate(lin) if a.number == t.number), 0)
        return i > 0 and outcome_of_trial(lin[i - 1]) is Outcome.INTERRUPTED

    waiting = sorted(
        (t for t in trials if t.state == TrialState.WAITING and not skipped(t)),
        key=lambda t: t.number,
    )
    last = max((t.number for t in waiting if resumes(t)), default=None)
    if last is None:
        return []
    return [t.number for t in waiting if t.number < last and not resumes(t)]
