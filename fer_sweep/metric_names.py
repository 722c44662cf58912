"""One name per quantity, in the thesis's split names: MLflow, Optuna attributes and ``best``.

The ``/`` prefix is the split (or ``train``), so the MLflow UI groups the charts by split:
``train/...`` is the Training split, ``PublicTest/...`` the validation split that selects
epochs and trials, ``PrivateTest/...`` the test split the thesis reports ("private set
accuracy"), evaluated once per finished model and never used for selection.

Accuracies are fractions (0-1) in MLflow metrics and Optuna attributes, as Keras reports
them; tables and notes for people show them in percent with two decimals. MLflow's runs table
prints a metric as logged (``0.24333333333333335``) and cannot format a column, so the
once-per-run accuracies are also logged as percent twins (:func:`percent_name`), rounded as
the thesis writes them, for the table and its bar charts. Code reads the fractions.
"""

from __future__ import annotations

from fer_sweep.fer2013 import EMOTIONS

# Per epoch, logged with step = epoch (1-based).
TRAIN_LOSS = "train/loss"
TRAIN_ACCURACY = "train/accuracy"
LEARNING_RATE = "train/learning_rate"
EPOCH_SECONDS = "train/epoch_seconds"  # wall time of the epoch, its PublicTest pass included
PUBLIC_LOSS = "PublicTest/loss"
PUBLIC_ACCURACY = "PublicTest/accuracy"

# Keras's names for the same per-epoch numbers (the keys of ``fit``'s logs and of a run's
# history) mapped to ours: the one place where the two vocabularies meet.
FROM_KERAS: dict[str, str] = {
    "loss": TRAIN_LOSS,
    "accuracy": TRAIN_ACCURACY,
    "lr": LEARNING_RATE,
    "epoch_seconds": EPOCH_SECONDS,
    "val_loss": PUBLIC_LOSS,
    "val_accuracy": PUBLIC_ACCURACY,
}

# Once per run.
PUBLIC_BEST = "PublicTest/accuracy_best"  # the best epoch's: the selection objective
PUBLIC_FINAL = "PublicTest/accuracy_final"
PRIVATE_FINAL = "PrivateTest/accuracy_final"  # Table 5.7's number: the final epoch's weights
PRIVATE_AT_BEST = "PrivateTest/accuracy_at_best_epoch"  # the best-PublicTest epoch's weights
# A network that sees a centre crop, averaged over its ten crops (beyond the thesis).
PRIVATE_FINAL_TENCROP = "PrivateTest/accuracy_final_tencrop"
PRIVATE_AT_BEST_TENCROP = "PrivateTest/accuracy_at_best_epoch_tencrop"
TRAIN_BEST = "train/accuracy_best"  # what Section 5.3.4 compares
BEST_EPOCH = "best_epoch"
EPOCHS_TRAINED = "epochs_trained"
FIT_SECONDS = "fit_seconds"  # wall time inside training (all epochs of this attempt)
EVAL_SECONDS = "eval_seconds"  # wall time of the PrivateTest evaluations


def objective(at: str) -> str:
    """The name of a study's objective, whose epoch ``at`` (a sweep file's ``objective.at``:
    ``best`` or ``last``) picks: the name its trials' value has in MLflow, in the Optuna
    study (``metric_names``, which optuna-dashboard shows) and in ``best``."""
    if at not in ("best", "last"):
        raise ValueError(f"no objective at {at!r} (best or last)")
    return PUBLIC_BEST if at == "best" else PUBLIC_FINAL


# PrivateTest at the epochs a sweep names (``report_epochs``), logged with step = epoch.
PRIVATE_AT_EPOCH = "PrivateTest/accuracy_at_epoch"


def per_class(which: str, emotion: str) -> str:
    """PrivateTest accuracy of one class, ``which`` being ``final`` or ``at_best_epoch``."""
    if which not in ("final", "at_best_epoch") or emotion not in EMOTIONS:
        raise ValueError(f"no per-class metric for {which!r} / {emotion!r}")
    return f"PrivateTest_per_class/{which}/{emotion}"


def is_per_class(name: str) -> bool:
    """Whether ``name`` is one of the :func:`per_class` metrics."""
    return name.startswith("PrivateTest_per_class/")


def from_keras(logs: dict[str, float]) -> dict[str, float]:
    """An epoch's Keras logs under our names (keys we do not know pass through unchanged)."""
    return {FROM_KERAS.get(k, k): float(v) for k, v in logs.items()}


# On a study's parent run: the best trial's numbers under the names above, and the count of
# attempts per state (``complete``, ``pruned``, ``fail``, ``skipped``, ...) and of
# configurations tried.
def trial_count(state: str) -> str:
    """The study run's metric counting its trials in ``state`` (lower case)."""
    return f"trials/{state}"


# The once-per-run accuracies the runs table shows: logged twice, as fractions under the names
# above and in percent under :func:`percent_name`. Per-epoch curves stay fractions (a chart's
# axis reads either way) and so do per-class numbers (in the charts only).
PERCENT_TWINS = (
    PUBLIC_BEST,
    PUBLIC_FINAL,
    PRIVATE_FINAL,
    PRIVATE_AT_BEST,
    PRIVATE_FINAL_TENCROP,
    PRIVATE_AT_BEST_TENCROP,
    TRAIN_BEST,
)


def percent_name(name: str) -> str:
    """The percent twin of a once-per-run accuracy: ``PrivateTest/accuracy_final_pct``."""
    if name not in PERCENT_TWINS:
        raise ValueError(f"{name!r} has no percent twin")
    return f"{name}_pct"  # MLflow refuses "%" in a metric name


def with_percent(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` plus the percent twin of each accuracy in it, rounded to two decimals (what
    the thesis's tables print and what MLflow's runs table then shows as it is)."""
    twins = {percent_name(k): round(100.0 * v, 2) for k, v in metrics.items() if k in PERCENT_TWINS}
    return {**metrics, **twins}
