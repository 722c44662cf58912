"""A reproduction run's folder: which recipe and seed it trains, where it lives, what it holds.

``OUT/work/<recipe>-seed<N>/`` holds the run's checkpoint (after every epoch), its
``sessions.json`` (each start or resume: when, from which epoch, on what), and once it has
finished ``result.json``, its final and best weights and its per-image predictions. The
runner (:mod:`._reproduction`) writes it; the report (:mod:`._reproduction_report`) reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fer_sweep.config import TrainConfig, load_config

RECIPES = ("thesis-top1", "thesis-top2", "thesis-top3")
# The seeds the report always lists (each recipe's three, as Table 5.7 is compared over).
REPORT_SEEDS = (0, 1, 2)
RESULT_FILE = "result.json"  # a finished run's numbers, beside its checkpoint
SESSIONS_FILE = "sessions.json"  # where and on what each start or resume of a run trained


def run_config(recipe: str, seed: int, epochs: int | None = None) -> TrainConfig:
    """The preset as the thesis ran it, with ``seed`` and a checkpoint after every epoch."""
    return load_config(preset=recipe, seed=seed, epochs=epochs, checkpoint_every=1)


def workdir(out: Path, recipe: str, seed: int) -> Path:
    return Path(out) / "work" / f"{recipe}-seed{seed}"


def report_seeds(out: Path) -> tuple[int, ...]:
    """The seeds a report covers: :data:`REPORT_SEEDS` and any other seed a run folder under
    ``out`` holds, so that writing the report after one run never drops another's rows."""
    found = set(REPORT_SEEDS)
    for folder in (Path(out) / "work").glob("*-seed*"):
        match = re.fullmatch(r"(?P<recipe>.+)-seed(?P<seed>[0-9]+)", folder.name)
        if match and match["recipe"] in RECIPES and folder.is_dir():
            found.add(int(match["seed"]))
    return tuple(sorted(found))


def last_session(folder: Path) -> dict:
    path = folder / SESSIONS_FILE
    return json.loads(path.read_text())[-1] if path.exists() else {}


def checkpoint_payload(folder: Path) -> dict | None:
    from fer_sweep.training import STATE_FILE, checkpoint_path

    path = checkpoint_path(folder) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def checkpoint_state(folder: Path) -> dict | None:
    payload = checkpoint_payload(folder)
    return payload["state"] if payload else None


def checkpoint_config(folder: Path) -> dict:
    return checkpoint_payload(folder)["config"]
