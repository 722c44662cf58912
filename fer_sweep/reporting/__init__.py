"""What the results say: ranking beside the thesis, paired tests, claims, ensembles, reproduction.

- ``_ranking`` and ``_tables``: ``best``'s ranking and its tables;
- :mod:`.stats` and ``_comparisons``: intervals and paired tests on the same test images;
- ``_study_report`` and ``_claims``: ``report`` of a study, and the thesis's claims judged;
- ``_ensemble``: trials and reproduction runs as one model (``best --ensemble``, ``ensemble``);
- ``_reproduction`` and ``_reproduction_report``: the thesis's top 3 at full length, and the report.

Only a thesis recipe at the thesis's length on the whole PrivateTest stands beside the thesis
(:func:`fer_sweep.thesis.comparable`, the one rule).
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=["stats"],
    submod_attrs={
        "_claims": ["CLAIMS", "CLAIMS_FILE", "claims_markdown"],
        "_ensemble": [
            "TTA_CHOICES",
            "evaluate_ensemble",
            "evaluate_top_trials",
            "run_member",
            "trial_members",
        ],
        "_ranking": ["rank_trials"],
        "_reproduction": ["backfill_predictions", "run_all", "work_left"],
        "_reproduction_folders": ["RECIPES", "RESULT_FILE"],
        "_reproduction_report": ["reproduction_rows", "top3_verdict", "write_report"],
        "_study_report": [
            "REPORT_DIR",
            "build_study_report",
            "finished_trials",
            "log_study_report",
        ],
        "_tables": ["render"],
    },
)
