"""The options several commands share, and the one :class:`~fer_sweep.settings.Settings` of each.

Settings are resolved once, here, when a command starts (an option wins over its
environment variable, which wins over the default), and passed down from there.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="fer2013.csv, fer2013.csv.gz or an image folder "
        "(default: $FER2013_DATA, then data/fer2013.csv[.gz])",
    ),
]


TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then sqlite:///mlruns/mlflow.db)",
    ),
]


def settings_of(**options):
    """The one Settings object of this command: its options, else the environment.

    On the JAX backend it also points JAX's persistent compilation cache at the settings'
    folder, before anything compiles.
    """
    from fer_sweep.backend import use_compilation_cache
    from fer_sweep.settings import Settings

    settings = Settings.resolve(**options)
    use_compilation_cache(settings.jax_cache)
    return settings


def pace_measure(settings):
    """How a forecast measures a pace this machine has not cached: a short fit, said on
    stderr while it runs; None where ``$FER_SWEEP_MEASURE_PACE`` is off."""
    if not settings.measure_pace:
        return None

    def measure(config):
        from fer_sweep.lifecycle import measure_pace

        print(
            f"measuring this machine's pace for {config.arch} (a short fit)...",
            file=sys.stderr,
            flush=True,
        )
        return measure_pace(config)

    return measure


RetriesOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="retries of a configuration whose attempt failed "
        "(default: $FER_SWEEP_MAX_RETRIES, then 1)",
    ),
]


SeedsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="seeds per configuration, its objective their mean "
        "(default: the budget's, then the file's, then 1)",
    ),
]


StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna storage URL (default: $FER_SWEEP_STORAGE, then sqlite:///mlruns/optuna.db)",
    ),
]
