"""The search: sweep files, their search spaces, samplers and pruners, the plan of a sweep.

The data flows one way: a YAML file (:func:`load_sweep`: ``_sweepfile`` reads it, the
pydantic models of ``_schema`` validate each key, ``_checks`` what depends on several)
becomes a :class:`SweepSpec` (``_space``), and each trial's parameters a config; the plan
(``_plan``) lists what a budget runs without running it. ``_samplers`` builds Optuna's
samplers and pruners, and the per-trial seeded sampler workers propose with.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "_plan": ["Plan", "make_plan", "render_plan"],
        "_samplers": ["make_pruner", "make_sampler", "trial_seed", "worker_sampler"],
        "_schema": ["schema_text"],
        "_space": [
            "Budget",
            "SweepSpec",
            "arms",
            "choice_text",
            "choices_text",
            "expand",
            "suggest",
            "trial_config_values",
            "trial_label",
        ],
        "_sweepfile": ["list_sweeps", "load_sweep", "parse_sweep"],
    },
)
