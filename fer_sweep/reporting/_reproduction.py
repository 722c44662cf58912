"""The thesis's top 3 at full length, several seeds each: the runner.

``python -m fer_sweep reproduce`` trains each chosen preset (``thesis-top1/2/3``: 80, 80 and
100 epochs) with each chosen seed through the project's own trainer, one run after another.
Every run lives in its own folder (:mod:`._reproduction_folders`) and checkpoints after
every epoch, so the same command continues where it stopped -- after a Ctrl-C, a crash, or
in a later session that has the folder (the checkpoints are small enough to commit). After
each run it rewrites the report (:mod:`._reproduction_report`) from what is on disk.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import threading
from datetime import UTC, datetime
from pathlib import Path

from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset
from fer_sweep.errors import UserError
from fer_sweep.lifecycle import PaceCache, Work, pace_key
from fer_sweep.reporting._reproduction_folders import (
    RECIPES,
    RESULT_FILE,
    SESSIONS_FILE,
    checkpoint_state,
    run_config,
    workdir,
)
from fer_sweep.reporting._reproduction_report import write_report
from fer_sweep.training import predictions


def run_all(
    dataset: Dataset,
    *,
    out: Path,
    recipes: tuple[str, ...] = RECIPES,
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: int | None = None,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    pace_cache: PaceCache | None = None,
) -> None:
    """Train every (recipe, seed) that has not finished, writing the report after each;
    each finished epoch's time goes into ``pace_cache`` (later forecasts read it)."""
    from fer_sweep.training import EpochProgress, train

    for recipe in recipes:
        for seed in seeds:
            folder = workdir(out, recipe, seed)
            if (folder / RESULT_FILE).exists():
                continue
            config = run_config(recipe, seed, epochs)
            _note_session(folder)
            steps = math.ceil(int((dataset.split == 0).sum()) / config.batch_size)
            bar = [EpochProgress(config.epochs, steps)] if progress else []
            if pace_cache is not None:
                bar.append(
                    _pace_recorder(
                        pace_cache, config, steps, len_train(dataset), f"{recipe} seed {seed}"
                    )
                )
            result = train(config, dataset, workdir=folder, callbacks=bar, stop_event=stop_event)
            # Final and best-epoch weights, plain and with flip TTA, per image: the report's
            # paired comparisons read them.
            predictions.score_run(folder, dataset)
            (folder / RESULT_FILE).write_text(json.dumps(_result_record(result), indent=1))
            write_report(out)


def len_train(dataset: Dataset) -> int:
    return int((dataset.split == 0).sum())


def _pace_recorder(cache: PaceCache, config: TrainConfig, steps: int, images: int, what: str):
    """A callback that feeds each finished epoch's time into ``cache``."""
    from fer_sweep.backend import name
    from fer_sweep.lifecycle import TrialProgress

    key = pace_key(name(), config.network, config.batch_size, images)

    def epoch_done(seconds: list[float]) -> None:
        with contextlib.suppress(OSError):
            cache.record_epochs(key, seconds, images, what)

    return TrialProgress(
        what,
        epochs=config.epochs,
        steps=steps,
        batch_size=config.batch_size,
        publish=lambda state: None,
        epoch_done=epoch_done,
        lines=False,
    )


def work_left(
    out: Path,
    dataset: Dataset,
    recipes: tuple[str, ...],
    seeds: tuple[int, ...],
    epochs: int | None,
) -> list[Work]:
    """Each (recipe, seed) not finished, with the epochs after its checkpoint."""
    from fer_sweep.training import checkpoint_epoch

    left = []
    for recipe in recipes:
        for seed in seeds:
            folder = workdir(out, recipe, seed)
            if (folder / RESULT_FILE).exists():
                continue
            config = run_config(recipe, seed, epochs)
            done = checkpoint_epoch(folder) if folder.exists() else 0
            left.append(Work(config, max(0, config.epochs - done), len_train(dataset)))
    return left


def backfill_predictions(folder: Path, dataset: Dataset) -> str:
    """Write the per-image predictions of a run that finished before runs wrote them, and
    say how its accuracies from them compare with its ``result.json``."""
    from fer_sweep.training import training_data

    folder = Path(folder)
    if not (folder / RESULT_FILE).is_file():
        raise UserError(f"{folder}: no {RESULT_FILE}, so not a finished run's folder")
    result = json.loads((folder / RESULT_FILE).read_text())
    dataset = training_data(TrainConfig(**result["config"]), dataset)
    path = predictions.score_run(folder, dataset)
    private = predictions.load(path).split("PrivateTest")
    said = ", ".join(
        f"{label} {100 * private.correct(variant).mean():.2f} % "
        f"(result.json: {100 * result[key]:.2f} %)"
        for label, variant, key in (
            ("final", "final", "private_final"),
            ("at best epoch", "best", "private_at_best_epoch"),
        )
    )
    return f"{path}: PrivateTest {said}"


def _note_session(folder: Path) -> None:
    """Append this start (or resume) of a run: when, from which epoch, backend, hardware."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SESSIONS_FILE
    sessions = json.loads(path.read_text()) if path.exists() else []
    state = checkpoint_state(folder)
    sessions.append(
        {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "from_epoch": state["epoch"] if state else 0,
            "backend": _backend(),
            "hardware": _hardware(),
        }
    )
    path.write_text(json.dumps(sessions, indent=1))


def _result_record(result) -> dict:
    return {
        "config": result.config.model_dump(mode="json"),
        "epochs_trained": result.epochs_trained,
        "best_epoch": result.best_epoch,
        "public_best": result.best_val_accuracy,
        "public_final": result.final_val_accuracy,
        "private_final": result.test_final.accuracy,
        "private_at_best_epoch": result.test_best.accuracy,
        "history": result.history,
        "backend": _backend(),
        "hardware": _hardware(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _backend() -> str:
    import keras

    name = keras.backend.backend()
    if name == "tensorflow":
        # The allocator halves or doubles a CPU epoch (benchmarks/README.md): say which ran.
        from fer_sweep.backend import tensorflow_allocator

        name += f", {tensorflow_allocator()} memory"
    return f"keras {keras.__version__}, {name}"


def _hardware() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores, {model or platform.processor() or platform.machine()}"
