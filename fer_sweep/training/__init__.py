"""One training run as Section 5.2 describes it: load, build, compile, fit, evaluate.

The trainer knows nothing about Optuna or MLflow: sweeps and tracking hand it Keras
callbacks. Randomness is keyed by ``(seed, epoch)``, so a run resumed from its checkpoint
continues exactly as the uninterrupted one.

- ``_trainer``: :func:`train`, the loop read top to bottom;
- ``_pipeline`` and ``_schedules``: the seeded batches and the learning-rate schedules;
- ``_callbacks``: the trainer's own callbacks; ``_checkpoint``: the run folder's files;
- ``_evaluation`` and :mod:`.predictions`: accuracy per split, and per-image predictions;
- ``_progress`` and ``_throughput``: the console bar, and images/s as a trial trains.
"""

import lazy_loader as lazy

# Names load on first use, so importing the package costs nothing (no Keras, no MLflow).
__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submodules=["predictions"],
    submod_attrs={
        "_checkpoint": ["FINAL_MODEL", "STATE_FILE", "checkpoint_epoch", "checkpoint_path"],
        "_evaluation": ["SplitReport", "report_of"],
        "_pipeline": ["eval_inputs"],
        "_progress": ["EpochProgress"],
        "_schedules": ["make_optimizer"],
        "_throughput": ["BatchClock", "project_fitter"],
        "_trainer": ["TrainResult", "train", "training_data"],
    },
)
