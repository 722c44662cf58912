"""How a run's checkpoints travel between machines through an MLflow tracking server.

Each new checkpoint is uploaded whole into ``checkpoints/epoch-NNNN/`` and only then named by
the run's ``fer_sweep.checkpoint`` tag, so a retry on another machine
(:func:`fetch_checkpoint`) never pairs one epoch's model with another epoch's state.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import keras
from mlflow.tracking import MlflowClient

from fer_sweep.errors import first_line
from fer_sweep.tracking._runs import TrackedRun
from fer_sweep.training import checkpoint_epoch, checkpoint_path

# The run's tag naming its latest complete checkpoint upload (an artifact folder).
CHECKPOINT_TAG = "fer_sweep.checkpoint"


CHECKPOINTS = "checkpoints"


_STAGED = ".upload-epoch-"  # a checkpoint's files, linked for a background upload


class CheckpointUploader(keras.callbacks.Callback):
    """Uploads each new checkpoint to the run's artifacts, for a retry on another machine.

    The trainer writes its checkpoint after every other callback at the end of an epoch, so
    the upload happens at the start of the next epoch (and once more when training stops).
    The folder goes whole to ``checkpoints/epoch-NNNN/``; only then does the run's
    ``fer_sweep.checkpoint`` tag move to it, so a worker killed mid-upload leaves the tag on
    the previous complete checkpoint. The superseded folder is then removed.

    With ``background=True`` the upload goes through the run's background writer, so the
    next epoch trains meanwhile: the checkpoint's files are first hard-linked into a folder of
    their own (the trainer replaces its checkpoint folder whole and never rewrites a file, so
    the links keep this epoch's files however far training gets), which the upload removes.
    """

    def __init__(self, run: TrackedRun, workdir: Path, *, background: bool = False) -> None:
        super().__init__()
        self.run = run
        self.workdir = Path(workdir)
        self.background = background
        self.uploaded: str | None = None
        self.uploaded_epoch = 0
        self._staged_epoch = 0
        if background:  # what a worker killed mid-upload left behind
            for stale in self.workdir.glob(f"{_STAGED}*"):
                shutil.rmtree(stale, ignore_errors=True)

    def upload(self) -> None:
        """Upload the checkpoint now unless it is uploaded (or handed to the writer) already."""
        epoch = checkpoint_epoch(self.workdir)
        folder = checkpoint_path(self.workdir)
        if epoch <= max(self.uploaded_epoch, self._staged_epoch) or not folder.is_dir():
            return
        if not self.background:
            self._upload(folder, epoch)
            return
        staged = self.workdir / f"{_STAGED}{epoch:04d}"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        for f in folder.iterdir():
            try:
                os.link(f, staged / f.name)
            except OSError:  # a file system without hard links: copy
                shutil.copy2(f, staged / f.name)
        self._staged_epoch = epoch
        self.run.later(
            f"checkpoint upload after epoch {epoch}", self._upload, staged, epoch, remove=True
        )

    def _upload(self, folder: Path, epoch: int, *, remove: bool = False) -> None:
        try:
            self._send(folder, epoch)
        finally:
            if remove:
                shutil.rmtree(folder, ignore_errors=True)

    def _send(self, folder: Path, epoch: int) -> None:
        client, run_id = self.run.client, self.run.id
        path = f"{CHECKPOINTS}/epoch-{epoch:04d}"
        what = f"checkpoint upload after epoch {epoch}"
        try:
            for f in sorted(folder.iterdir()):  # the trainer's checkpoint folder is flat
                client.log_artifact(run_id, str(f), artifact_path=path)
            client.set_tag(run_id, CHECKPOINT_TAG, path)
        except Exception as err:  # noqa: BLE001 - tracking loss is noted, training goes on
            self.run.note(f"{what}: {first_line(err)}")
            self._staged_epoch = self.uploaded_epoch  # the next epoch's start tries again
            return
        previous, self.uploaded, self.uploaded_epoch = self.uploaded, path, epoch
        if previous is not None:
            self.run.safely(
                f"removing the superseded {previous}", _delete_artifacts, client, run_id, previous
            )

    def on_epoch_begin(self, epoch, logs=None):
        self.upload()


def _delete_artifacts(client: MlflowClient, run_id: str, path: str) -> None:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(client.get_run(run_id).info.artifact_uri).delete_artifacts(path)


def fetch_checkpoint(client: MlflowClient, run_id: str, workdir: Path) -> int:
    """Put ``run_id``'s latest complete checkpoint into ``workdir`` unless it has one; returns
    the epoch it holds (0: none, training starts over)."""
    workdir = Path(workdir)
    if checkpoint_epoch(workdir) > 0:
        return checkpoint_epoch(workdir)
    try:
        path = client.get_run(run_id).data.tags.get(CHECKPOINT_TAG)
        if not path:
            return 0
        workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            local = Path(client.download_artifacts(run_id, path, tmp))
            shutil.rmtree(checkpoint_path(workdir), ignore_errors=True)
            local.rename(checkpoint_path(workdir))
    except Exception as err:  # noqa: BLE001 - no checkpoint means starting over, not failing
        print(
            f"warning: could not fetch run {run_id}'s checkpoint ({first_line(err)}); "
            "starting from epoch 1",
            file=sys.stderr,
        )
        return 0
    return checkpoint_epoch(workdir)
