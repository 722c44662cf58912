"""A small synthetic dataset in FER-2013's CSV schema, for tests and demos without the data."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from fer_sweep.data._csv import CSV_COLUMNS
from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, IMAGE_SIZE, SPLITS


def write_synthetic_csv(
    path: str | os.PathLike,
    *,
    per_split: int = 70,
    seed: int = 0,
    compress: bool | None = None,
) -> Path:
    """Write a small FER-2013-schema CSV: ``per_split`` rows per split, all 7 classes in each.

    Each image is noise over a faint blob whose position depends on the class, so a model
    can learn a little from it. ``compress=None`` gzips when the path ends in .gz. The
    output is byte-identical for the same arguments.
    """
    if per_split < len(EMOTIONS):
        raise UserError(f"per_split must be at least {len(EMOTIONS)} (one row per class)")
    path = Path(path)
    rng = np.random.default_rng(seed)
    lines = [",".join(CSV_COLUMNS)]
    for usage in SPLITS:
        labels = np.arange(per_split) % len(EMOTIONS)
        rng.shuffle(labels)
        for label in labels:
            pixels = " ".join(map(str, _synthetic_image(int(label), rng).ravel().tolist()))
            lines.append(f"{label},{pixels},{usage}")
    data = ("\n".join(lines) + "\n").encode("ascii")
    if path.name.endswith(".gz") if compress is None else compress:
        # mtime=0 keeps the gzip bytes, and so the sha256, reproducible.
        data = gzip.compress(data, mtime=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from e
    return path


def _synthetic_image(label: int, rng: np.random.Generator) -> np.ndarray:
    """Noise plus a Gaussian blob placed on a circle at an angle set by the class."""
    angle = 2 * np.pi * label / len(EMOTIONS)
    cy, cx = 24 + 12 * np.sin(angle), 24 + 12 * np.cos(angle)
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    blob = 70 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 6.0**2))
    image = 100 + rng.normal(0, 10) + blob + rng.normal(0, 25, (IMAGE_SIZE, IMAGE_SIZE))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
