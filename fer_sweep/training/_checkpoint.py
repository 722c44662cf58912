"""A run folder's files: the checkpoint written every few epochs, the best and final weights.

The checkpoint (model with optimizer state, the :class:`TrainingState` beside it, the best
weights so far) is written whole into a temporary folder, read back, then swapped in; the one
it replaces stays as ``checkpoint.prev``, so a damaged checkpoint still leaves one to resume.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

from fer_sweep.config import TrainConfig
from fer_sweep.errors import UserError, first_line

CHECKPOINT_DIR = "checkpoint"


MODEL_FILE = "model.keras"


BEST_WEIGHTS = "best.weights.h5"


FINAL_MODEL = "final.keras"


STATE_FILE = "state.json"


# Beside CHECKPOINT_DIR: the checkpoint it replaced (whole), where a damaged one is set aside,
# and the name the replaced one had only while being swapped before this layout.
PREVIOUS_DIR = CHECKPOINT_DIR + ".prev"


DAMAGED_DIR = CHECKPOINT_DIR + ".damaged"


LEGACY_OLD_DIR = CHECKPOINT_DIR + ".old"


@dataclass
class TrainingState:
    """What a checkpoint must remember besides the model: where we are and the best so far."""

    epoch: int = 0
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    history: dict[str, list[float]] = field(default_factory=dict)
    plateau: dict[str, float] = field(default_factory=dict)  # ReduceLROnPlateau's counters
    private_at_epochs: dict[str, float] = field(default_factory=dict)  # JSON keys: str


def save_checkpoint(
    model: keras.Model, state: TrainingState, workdir: Path, config: TrainConfig
) -> None:
    """Write the checkpoint folder whole, check it reads back, then swap it in.

    The checkpoint it replaces stays, whole, as ``checkpoint.prev``, so a checkpoint damaged
    later (a truncated copy, a bad disk) still leaves one to resume from; a write that fails
    (a full disk) removes its partial folder and leaves both in place.
    """
    tmp = workdir / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        model.save(tmp / MODEL_FILE)
        if (workdir / BEST_WEIGHTS).exists():
            shutil.copy2(workdir / BEST_WEIGHTS, tmp / BEST_WEIGHTS)
        payload = {"state": asdict(state), "config": config.model_dump(mode="json")}
        (tmp / STATE_FILE).write_text(json.dumps(payload))
        _check_readable(tmp)
    except BaseException:
        shutil.rmtree(
            tmp, ignore_errors=True
        )  # a partial folder also holds space a full disk needs
        raise
    final, previous = workdir / CHECKPOINT_DIR, workdir / PREVIOUS_DIR
    shutil.rmtree(workdir / LEGACY_OLD_DIR, ignore_errors=True)
    shutil.rmtree(previous, ignore_errors=True)
    if final.exists():
        final.rename(previous)
    tmp.rename(final)


def checkpoint_path(workdir: Path) -> Path:
    """The folder holding ``workdir``'s newest checkpoint (model, optimizer, state)."""
    return Path(workdir) / CHECKPOINT_DIR


def _candidates(workdir: Path) -> list[Path]:
    """Checkpoint folders to resume from, newest first: the current one, the one it replaced,
    and the name an earlier version gave the replaced one while swapping (``.old``)."""
    return [Path(workdir) / d for d in (CHECKPOINT_DIR, PREVIOUS_DIR, LEGACY_OLD_DIR)]


def _read_state(folder: Path) -> dict:
    """The payload of ``folder``'s state.json, or :class:`CheckpointUnreadable`."""
    path = folder / STATE_FILE
    try:
        payload = json.loads(path.read_text())
        int(payload["state"]["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointUnreadable(f"{path}: {first_line(err) or type(err).__name__}") from None
    return payload


def _check_readable(folder: Path) -> None:
    """The cheap part of reading a checkpoint back: its state parses and the model archive's
    every member has the CRC it was written with (a truncated file fails here)."""
    import zipfile

    _read_state(folder)
    path = folder / MODEL_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile) as err:
        raise CheckpointUnreadable(f"{path}: {first_line(err)}") from None
    if bad is not None:
        raise CheckpointUnreadable(f"{path}: {bad} is damaged")


def checkpoint_epoch(workdir: Path) -> int:
    """Epochs done according to the newest readable checkpoint in ``workdir`` (0: none)."""
    for folder in _candidates(workdir):
        try:
            return int(_read_state(folder)["state"]["epoch"])
        except CheckpointUnreadable:
            continue
    return 0


class CheckpointUnreadable(Exception):
    """A checkpoint folder that cannot be resumed from (the message names the file)."""


def restore_checkpoint(
    workdir: Path, config: TrainConfig
) -> tuple[keras.Model | None, TrainingState | None, str]:
    """The model and state of the newest readable checkpoint (None, None: there is none) and
    a line saying which unreadable ones were passed over (empty when none was)."""
    skipped: list[str] = []
    for folder in _candidates(workdir):
        if not folder.exists():
            continue
        try:
            payload = _read_state(folder)
        except CheckpointUnreadable as err:
            skipped.append(first_line(err))
            continue
        try:
            saved = TrainConfig(**payload["config"])
        except (KeyError, ValueError, TypeError) as err:
            skipped.append(f"{folder / STATE_FILE}: no valid config ({first_line(err)})")
            continue
        if saved != config:
            changed = sorted(
                k for k, v in config.model_dump().items() if saved.model_dump()[k] != v
            )
            raise UserError(
                f"{folder} holds a run with a different config ({', '.join(changed)} differ); "
                "resume with the same config or use a new work dir"
            )
        try:
            _check_readable(folder)
            # The training model holds fer_sweep's own layers (the warp, erasing, mixing):
            # Keras finds them by their registered names once their module is imported.
            from fer_sweep.model import training_model  # noqa: F401

            model = keras.models.load_model(folder / MODEL_FILE)
        except CheckpointUnreadable as err:  # its message names the file
            skipped.append(str(err))
            continue
        except Exception as err:  # noqa: BLE001 - Keras raises many types for a bad archive
            skipped.append(f"{folder / MODEL_FILE}: {first_line(err)}")
            continue
        if (folder / BEST_WEIGHTS).exists():
            shutil.copy2(folder / BEST_WEIGHTS, workdir / BEST_WEIGHTS)
        state = TrainingState(**payload["state"])
        note = ""
        if skipped:
            note = (
                f"resumed from the checkpoint after epoch {state.epoch} in {folder.name}/; "
                f"passed over the unreadable {'; '.join(skipped)}"
            )
        if folder.name != CHECKPOINT_DIR:
            # The newest readable one becomes the current one; a damaged one is set aside.
            damaged = workdir / DAMAGED_DIR
            shutil.rmtree(damaged, ignore_errors=True)
            if checkpoint_path(workdir).exists():
                checkpoint_path(workdir).rename(damaged)
            folder.rename(checkpoint_path(workdir))
        return model, state, note
    if not skipped:
        return None, None, ""
    (workdir / BEST_WEIGHTS).unlink(missing_ok=True)  # it belonged to the unreadable run
    return (
        None,
        None,
        (
            f"no readable checkpoint, starting from epoch 1; passed over the "
            f"unreadable {'; '.join(skipped)}"
        ),
    )
