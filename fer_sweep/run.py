"""One tracked training run: an MLflow run around :func:`fer_sweep.train.train`.

Used by ``fer_sweep train`` and by every sweep trial, so both record the same things and
their MLflow status follows what happened: FINISHED, KILLED (interrupted or pruned) or FAILED
(with the error as a tag).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import keras
from mlflow.tracking import MlflowClient

from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset
from fer_sweep.progress import EpochProgress
from fer_sweep.tracking import EpochLogger, log_result, store_dir
from fer_sweep.train import TrainingDiverged, TrainingInterrupted, TrainResult, train


def workdir_for(key: str) -> Path:
    """Local folder for a run's checkpoints (kept so an interrupted run can resume)."""
    return store_dir() / "work" / key


def run_status(exc: BaseException | None, killed: tuple[type[BaseException], ...] = ()) -> str:
    if exc is None:
        return "FINISHED"
    if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt, *killed)):
        return "KILLED"
    return "FAILED"


def tracked_train(
    config: TrainConfig,
    dataset: Dataset,
    *,
    client: MlflowClient,
    run_id: str,
    workdir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    stop_event: threading.Event | None = None,
    progress: bool = True,
    killed_on: tuple[type[BaseException], ...] = (),
) -> TrainResult:
    """Train into the existing MLflow run ``run_id`` and close it with the right status."""
    client.set_tag(run_id, "fer_sweep.dataset_sha256", dataset.sha256)
    client.set_tag(run_id, "fer_sweep.dataset_source", dataset.source)
    client.set_tag(run_id, "fer_sweep.workdir", str(workdir))
    logger = EpochLogger(client, run_id)
    bar = None
    if progress:
        n_train = config.subset or int((dataset.split == 0).sum())
        bar = EpochProgress(config.epochs, math.ceil(n_train / config.batch_size))
    error: BaseException | None = None
    try:
        result = train(
            config,
            dataset,
            workdir=workdir,
            callbacks=[logger, *callbacks, *([bar] if bar else [])],
            stop_event=stop_event,
        )
        log_result(client, run_id, result)
        if logger.errors:
            client.set_tag(run_id, "fer_sweep.logging_errors", "; ".join(logger.errors)[:5000])
        return result
    except BaseException as exc:
        error = exc
        reason = "diverged" if isinstance(exc, TrainingDiverged) else type(exc).__name__
        # Closing bookkeeping must not mask the exception that is already on its way out.
        with suppress(Exception):
            client.set_tag(run_id, "fer_sweep.end_reason", reason)
            client.set_tag(run_id, "fer_sweep.error", str(exc)[:5000] or reason)
        raise
    finally:
        if bar is not None:
            bar.progress.stop()
        with suppress(Exception):
            client.set_terminated(run_id, run_status(error, killed_on))
