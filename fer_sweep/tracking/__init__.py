"""MLflow: what every run records, the run lifecycle, checkpoints, notes, views and the UI.

- ``_store``: the client, checked; ``_runs``: every run opened and closed in one place;
- ``_logging``: what a training run logs (:func:`tracked_train`), with ``_plots``;
- ``_checkpoints``: checkpoints between machines through a tracking server;
- ``_notes`` and ``_views``: what a person reads in the UI, and the study's saved view;
- ``_ui`` and ``_ui_app``: ``fer_sweep ui``, MLflow's server with a page of fer_sweep's.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_logging": ["WORKDIR_TAG", "config_from_run", "final_metrics", "tracked_train"],
        "_notes": [
            "NOTE",
            "choice_tags",
            "dataset_input",
            "mean_sd",
            "pct",
            "source_tags",
            "study_summary",
            "sweep_command",
            "trial_note",
            "trial_run_name",
        ],
        "_runs": [
            "STUDY_RUN_ATTR",
            "close_abandoned",
            "log_study_summary",
            "open_run",
            "set_study_run_status",
            "study_run",
            "study_run_status",
        ],
        "_store": ["connect"],
        "_ui": [
            "DEFAULT_WORKERS",
            "RUNS_FRAGMENT",
            "app_registered",
            "can_open_browser",
            "landing_url",
            "mlflow_command",
            "serve",
            "server_env",
            "study_url",
        ],
        "_views": ["SAVED_VIEW_ID", "SAVED_VIEW_PREFIX", "describe_study", "runs_url", "studies"],
    },
)
