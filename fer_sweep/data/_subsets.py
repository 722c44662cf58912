"""Stratified subsets: a few images per split with the class proportions kept."""

from __future__ import annotations

import numpy as np

from fer_sweep.data._dataset import Dataset
from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, SPLITS


def stratified_subset(ds: Dataset, n_per_split: int, *, seed: int = 0) -> Dataset:
    """At most ``n_per_split`` rows of each split, keeping the split's class proportions.

    Class quotas are rounded by largest remainder, and every class present in a split keeps
    at least one row when ``n_per_split`` is at least the number of such classes. Rows are
    drawn at random (deterministic for ``seed``) and keep their original order. A split
    with no more than ``n_per_split`` rows is kept whole.
    """
    if isinstance(n_per_split, bool) or not isinstance(n_per_split, int | np.integer):
        raise UserError(f"subset size must be a whole number, got {n_per_split!r}")
    if n_per_split <= 0:
        raise UserError(f"subset size must be at least 1 per split, got {n_per_split}")
    keep: list[np.ndarray] = []
    for split_index in range(len(SPLITS)):
        rows = np.flatnonzero(ds.split == split_index)
        if len(rows) <= n_per_split:
            keep.append(rows)
            continue
        rng = np.random.default_rng([seed, split_index])
        counts = np.bincount(ds.labels[rows], minlength=len(EMOTIONS))
        for label, quota in enumerate(_quotas(counts, n_per_split)):
            members = rows[ds.labels[rows] == label]
            keep.append(rng.choice(members, size=int(quota), replace=False))
    chosen = np.sort(np.concatenate(keep))
    return Dataset(
        images=ds.images[chosen],
        labels=ds.labels[chosen],
        split=ds.split[chosen],
        source=ds.source,
        sha256=ds.sha256,
        cache_path=ds.cache_path,
        rows=ds.row_numbers()[chosen],
    )


def _quotas(counts: np.ndarray, n: int) -> np.ndarray:
    """Per-class sample sizes summing to ``n`` (< counts.sum()), proportional to ``counts``."""
    exact = counts * n / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    # Largest remainder first; ties go to the lower class index, so the result is stable.
    order = np.lexsort((np.arange(len(counts)), -(exact - quotas)))
    quotas[order[: n - quotas.sum()]] += 1
    present = counts > 0
    if n >= present.sum():
        for label in np.flatnonzero(present & (quotas == 0)):
            # Pigeonhole: some class then holds >= 2, so the donor never drops to zero.
            quotas[np.argmax(quotas)] -= 1
            quotas[label] += 1
    return quotas
