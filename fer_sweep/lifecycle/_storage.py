"""Optuna's storage: the database that holds every study, and the heartbeats of its trials.

SQLite under the store folder by default; PostgreSQL when workers on several machines share
one study. Running trials send heartbeats; a trial silent for longer than the grace period is
failed by the next worker that looks, which hands it to ``on_stale`` (the worker's retry
decision, :mod:`fer_sweep.lifecycle._worker`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from fer_sweep.errors import UserError, first_line, store_error
from fer_sweep.settings import Settings, check_sqlite_writable

StaleCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]

# Failed trials are reported in one line by the worker; Optuna's tracebacks are noise.
optuna.logging.set_verbosity(optuna.logging.ERROR)
# Heartbeats are "experimental" in Optuna 5 and have been since 2.8; say it once here.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_storage(
    settings: Settings, *, on_stale: StaleCallback | None = None
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage at ``settings.storage`` with heartbeats, checked before any training.

    ``on_stale`` is called with each trial this process finds dead (already marked FAIL).
    """
    url = settings.storage
    engine_url = url
    if url.startswith(("postgresql://", "postgres://")):
        # SQLAlchemy 2.1 reads plain postgresql:// as psycopg 3; fer-sweep ships psycopg2.
        engine_url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    engine_kwargs: dict = {}
    if url.startswith("sqlite:///"):
        try:
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise store_error("Optuna storage", url, err) from None
        check_sqlite_writable("Optuna storage", url)
        # Several local workers share the file: wait for the lock rather than fail at once.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif url.startswith("postgresql"):
        # A server that is down fails in seconds, not after the OS's TCP timeout; connections
        # that a days-long sweep leaves idle are checked before use.
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            engine_url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=settings.heartbeat,
            grace_period=settings.grace,
            heartbeat_stale_trial_callback=on_stale,
        )
    except Exception as err:  # noqa: BLE001 - the store's fault, a refused login, or "unreachable"
        reason = first_line(err)
        if "password" in reason:  # libpq: "no password supplied", "password authentication failed"
            raise UserError(
                f"Optuna storage {url} refused the connection: {reason} (give the password "
                "in $PGPASSWORD or a PGPASSFILE, ~/.pgpass by default)"
            ) from None
        raise store_error("Optuna storage", url, err) from None


def load_study(
    name: str, settings: Settings, storage: optuna.storages.BaseStorage, **kwargs
) -> optuna.Study:
    """The study ``name``, or a one-line error that lists the studies there are."""
    try:
        return optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage))
        raise UserError(
            f"no study '{name}' in {settings.storage} (studies: {known or 'none'})"
        ) from None
