"""One tracked training run: an MLflow run around :func:`fer_sweep.train.train`.

Used by ``fer_sweep train`` and by every sweep trial, so both record the same things and
their MLflow status follows what happened: FINISHED, KILLED (interrupted or pruned) or FAILED
(with the error as a tag).

With a remote tracking server, every new checkpoint is also uploaded to the run's artifacts
(``checkpoints/last``), so a retry on another machine resumes from it (``resume_run``)
without the dead worker's disk. MLflow failures after training has started never cost the
result: they are collected and reported, and the caller gets its :class:`TrainResult`.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import keras
from mlflow.tracking import MlflowClient

from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset
from fer_sweep.progress import EpochProgress
from fer_sweep.tracking import EpochLogger, is_local, log_result, store_dir
from fer_sweep.train import (
    CHECKPOINT_DIR,
    STATE_FILE,
    TrainingDiverged,
    TrainingInterrupted,
    TrainResult,
    checkpoint_epoch,
    train,
)

CHECKPOINT_ARTIFACTS = "checkpoints/last"


def workdir_for(key: str) -> Path:
    """Local folder for a run's checkpoints (kept so an interrupted run can resume)."""
    return store_dir() / "work" / key


class CheckpointUploader(keras.callbacks.Callback):
    """Copies each new checkpoint to the run's artifacts, for a retry on another machine.

    The trainer writes its checkpoint after every other callback at the end of an epoch, so
    the upload happens at the start of the next epoch (and once more when training stops).
    ``state.json`` goes last: a kill during an upload leaves the previous epoch's state.
    """

    def __init__(self, client: MlflowClient, run_id: str, workdir: Path, errors: list[str]):
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.workdir = Path(workdir)
        self.errors = errors
        self.uploaded = -1

    def upload(self) -> None:
        epoch = checkpoint_epoch(self.workdir)
        ckpt = self.workdir / CHECKPOINT_DIR
        if epoch <= self.uploaded or not ckpt.is_dir():
            return
        try:
            files = sorted(ckpt.iterdir(), key=lambda f: f.name == STATE_FILE)
            for f in files:
                self.client.log_artifact(self.run_id, str(f), artifact_path=CHECKPOINT_ARTIFACTS)
            self.uploaded = epoch
        except Exception as err:  # noqa: BLE001 - tracking loss is reported, training goes on
            _note(self.errors, f"checkpoint upload after epoch {epoch}: {_first_line(err)}")

    def on_epoch_begin(self, epoch, logs=None):
        self.upload()


def fetch_checkpoint(client: MlflowClient, run_id: str, workdir: Path) -> int:
    """Put ``run_id``'s uploaded checkpoint into ``workdir`` unless it has one; its epoch."""
    workdir = Path(workdir)
    if checkpoint_epoch(workdir) > 0:
        return checkpoint_epoch(workdir)
    try:
        names = {
            a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, CHECKPOINT_ARTIFACTS)
        }
        if STATE_FILE not in names:
            return 0
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            local = Path(client.download_artifacts(run_id, CHECKPOINT_ARTIFACTS, tmp))
            shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
            local.rename(workdir / CHECKPOINT_DIR)
    except Exception as err:  # noqa: BLE001 - no checkpoint means starting over, not failing
        print(f"warning: could not fetch run {run_id}'s checkpoint ({_first_line(err)}); "
              "starting from epoch 1", file=sys.stderr)  # fmt: skip
        return 0
    return checkpoint_epoch(workdir)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _note(errors: list[str], message: str) -> None:
    errors.append(message)
    if len(errors) == 1:
        print(f"warning: MLflow logging failed: {message}", file=sys.stderr)


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
    resume_run: str | None = None,
) -> TrainResult:
    """Train into the existing MLflow run ``run_id`` and close it with the right status.

    ``resume_run`` is an earlier attempt's run: when ``workdir`` holds no checkpoint, the one
    that attempt uploaded is fetched and training continues from it.
    """
    client.set_tag(run_id, "fer_sweep.dataset_sha256", dataset.sha256)
    client.set_tag(run_id, "fer_sweep.dataset_source", dataset.source)
    client.set_tag(run_id, "fer_sweep.workdir", str(workdir))
    if resume_run:
        client.set_tag(run_id, "fer_sweep.resumes_run", resume_run)
        if not is_local(client.tracking_uri):
            fetch_checkpoint(client, resume_run, workdir)
    logger = EpochLogger(client, run_id)
    uploader = None
    if not is_local(client.tracking_uri):
        uploader = CheckpointUploader(client, run_id, workdir, logger.errors)
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
            callbacks=[
                logger,
                *([uploader] if uploader else []),
                *callbacks,
                *([bar] if bar else []),
            ],  # fmt: skip
            stop_event=stop_event,
        )
    except BaseException as exc:
        error = exc
        if uploader is not None and isinstance(exc, TrainingInterrupted):
            uploader.upload()  # the checkpoint written on the way out
        reason = "diverged" if isinstance(exc, TrainingDiverged) else type(exc).__name__
        # Closing bookkeeping must not mask the exception that is already on its way out.
        with suppress(Exception):
            client.set_tag(run_id, "fer_sweep.end_reason", reason)
            client.set_tag(run_id, "fer_sweep.error", str(exc)[:5000] or reason)
        raise
    finally:
        if bar is not None:
            bar.progress.stop()
        if error is not None:
            with suppress(Exception):
                client.set_terminated(run_id, run_status(error, killed_on))
    # Trained: from here on a tracking failure is reported, never allowed to lose the result.
    try:
        log_result(client, run_id, result)
    except Exception as err:  # noqa: BLE001
        _note(logger.errors, f"final metrics and artifacts: {_first_line(err)}")
    result.extra["logging_errors"] = list(logger.errors)
    try:
        if logger.errors:
            client.set_tag(run_id, "fer_sweep.logging_errors", "; ".join(logger.errors)[:5000])
        client.set_terminated(run_id, "FINISHED")
    except Exception as err:  # noqa: BLE001
        _note(result.extra["logging_errors"], f"closing the run: {_first_line(err)}")
    if logger.errors:
        print(f"warning: run {run_id} is missing {len(logger.errors)} MLflow write(s); "
              f"the result itself is kept: {logger.errors[-1]}", file=sys.stderr)  # fmt: skip
    return result
