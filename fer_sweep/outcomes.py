"""How one attempt at a trial ended, and what that makes of its Optuna trial and MLflow run.

The one table :data:`STATUS` says, for each :class:`Outcome`, which state its Optuna trial gets
and which status its MLflow run gets; :func:`outcome_of` names the outcome of an attempt from
the exception it ended with. The worker, the MLflow run lifecycle and the study summaries
all read them from here.
"""

from __future__ import annotations

from enum import StrEnum

import optuna
from optuna.trial import TrialState

from fer_sweep.errors import Fault, TrainingDiverged, TrainingInterrupted, UserError, disk_full


class Outcome(StrEnum):
    """How one attempt at a trial ended, in the attempt's own words."""

    COMPLETE = "complete"  # trained to the end and evaluated
    PRUNED = "pruned"  # stopped by the pruner: a result, kept as such
    INTERRUPTED = "interrupted"  # stopped on request (Ctrl-C) after a checkpoint: resumes
    LOST = "lost"  # its worker died (no heartbeat) or vanished without a word
    DIVERGED = "diverged"  # the loss became NaN or infinite: a result, not an accident
    REFUSED = "refused"  # training refused the configuration: it would be refused again
    ERROR = "error"  # anything else that went wrong
    SKIPPED = "skipped"  # never trained: a duplicate point, or past the study's n_trials


# Outcome -> (the Optuna trial's state, the MLflow run's status). The one place they are set.
STATUS: dict[Outcome, tuple[TrialState, str]] = {
    Outcome.COMPLETE: (TrialState.COMPLETE, "FINISHED"),
    Outcome.PRUNED: (TrialState.PRUNED, "KILLED"),
    Outcome.INTERRUPTED: (TrialState.FAIL, "KILLED"),
    Outcome.LOST: (TrialState.FAIL, "KILLED"),
    Outcome.DIVERGED: (TrialState.FAIL, "FAILED"),
    Outcome.REFUSED: (TrialState.FAIL, "FAILED"),
    Outcome.ERROR: (TrialState.FAIL, "FAILED"),
    Outcome.SKIPPED: (TrialState.FAIL, "KILLED"),  # has no run; listed for completeness
}


def outcome_of(exc: BaseException | None) -> Outcome:
    """The outcome of an attempt that ended with ``exc`` (None: it finished)."""
    if exc is None:
        return Outcome.COMPLETE
    if isinstance(exc, optuna.TrialPruned):
        return Outcome.PRUNED
    if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, Exception) and disk_full(exc)):
        # A full disk stops the worker (see Worker); the attempt resumes once there is space.
        return Outcome.INTERRUPTED
    if isinstance(exc, UserError) and not isinstance(exc, Fault):
        # What the trainer refuses (a schedule with fewer updates than rates, a dataset
        # without a split it needs) is refused again on every retry: it is terminal.
        return Outcome.REFUSED
    if isinstance(exc, TrainingInterrupted):
        return Outcome.INTERRUPTED
    if isinstance(exc, TrainingDiverged):
        return Outcome.DIVERGED
    return Outcome.ERROR
