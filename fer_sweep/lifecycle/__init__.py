"""A study's lifecycle: create or resume it, run its trials in workers, settle each attempt.

- ``_storage`` and ``_study``: Optuna's storage, and a study with the plan it was made from;
- ``_decisions`` (pure) and ``_settle`` (their writes): what a worker does next;
- ``_worker``: the loop; ``_attempt``: one attempt, trained and tracked (:class:`TrainingRunner`);
- ``_sweep`` and ``_processes``: a whole sweep over ``--jobs`` worker processes;
- ``_forecast`` and ``_progress``: what a sweep will cost, and what it shows meanwhile.

How an attempt ended is one :class:`~fer_sweep.outcomes.Outcome`; :mod:`fer_sweep.outcomes`
maps it to the Optuna state and the MLflow status.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_attempt": ["open_worker"],
        "_forecast": [
            "FER2013_TRAINING_IMAGES",
            "PaceCache",
            "Work",
            "forecast",
            "forecast_line",
            "measure_pace",
            "pace_key",
            "sweep_forecast",
        ],
        "_processes": ["graceful_interrupt", "set_threads"],
        "_progress": ["TrialProgress", "epoch_end_message"],
        "_settle": ["settle_all"],
        "_storage": ["open_storage"],
        "_study": [
            "RUN_ID",
            "SEED_METRICS",
            "SEED_RUNS",
            "StudyPlan",
            "create_or_resume",
            "plan_of",
            "trial_config",
        ],
        "_sweep": ["run_sweep"],
    },
)
