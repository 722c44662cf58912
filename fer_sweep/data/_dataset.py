"""FER-2013 rows as arrays (:class:`Dataset`), and what each split is for.

Every source layout (``_csv``, ``_folder``) parses to :class:`Parsed`; loading
(``_load``) adds where the rows came from. A split a run needs and lacks is refused before
anything trains (:func:`require_splits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, IMAGE_SIZE, SPLITS


@dataclass(frozen=True, eq=False)
class Dataset:
    """FER-2013 rows as arrays: images, labels (index into EMOTIONS), split (index into SPLITS).

    ``source`` is the path the rows were read from and ``sha256`` the content hash of that
    source (logged as an MLflow tag); ``cache_path`` is the HDF5 cache the arrays live in,
    if any. Equality is identity: compare the arrays themselves.
    """

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    source: str
    sha256: str
    cache_path: str | None = None
    # The row of ``source`` each image is, 0-based: a CSV's data rows (header not counted), a
    # folder's images by split then file name. None for the whole source, where row i is
    # image i; a subset keeps its rows' numbers.
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if (
            self.images.shape != (n, IMAGE_SIZE, IMAGE_SIZE)
            or self.split.shape != (n,)
            or (self.rows is not None and self.rows.shape != (n,))
        ):
            raise ValueError(
                f"inconsistent Dataset arrays: images {self.images.shape}, "
                f"labels {self.labels.shape}, split {self.split.shape}"
            )

    def row_numbers(self, split: str | None = None) -> np.ndarray:
        """The source rows of every image (or of one split's, in ``arrays``' order)."""
        rows = np.arange(len(self.labels)) if self.rows is None else self.rows
        return rows if split is None else rows[self.split == self._split_index(split)]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one split, by its name in SPLITS."""
        mask = self.split == self._split_index(split)
        return self.images[mask], self.labels[mask]

    @staticmethod
    def _split_index(split: str) -> int:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return SPLITS.index(split)

    def counts(self) -> dict[str, list[int]]:
        """Rows per class (0..6) of every split: ``{split name: [count of class 0..6]}``."""
        return {
            name: np.bincount(self.labels[self.split == i], minlength=len(EMOTIONS)).tolist()
            for i, name in enumerate(SPLITS)
        }

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class Parsed:
    """What a source reader returns; load_dataset adds the paths."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    sha256: str


# What each split is for: a dataset without one of them cannot train, select or report.
SPLIT_ROLES = {
    "Training": "to train on",
    "PublicTest": "to select epochs and trials",
    "PrivateTest": "to report",
}


def require_splits(ds: Dataset) -> Dataset:
    """``ds`` when every split has rows, else the one-line error every training command and
    ``data check`` give before anything is written."""
    empty = [name for name, row in ds.counts().items() if sum(row) == 0]
    if empty:
        roles = ", ".join(f"{name} {SPLIT_ROLES[name]}" for name in SPLITS)
        raise UserError(
            f"{Path(ds.source).name}: no {' or '.join(empty)} rows; training needs "
            f"rows in every split ({roles})"
        )
    return ds


def check_report(ds: Dataset) -> str:
    """The text of ``fer_sweep data check``: provenance, then rows per split and class."""
    counts = ds.counts()
    header = ["split", "rows", *EMOTIONS]
    table = [[name, sum(row), *row] for name, row in counts.items()]
    totals = [sum(column) for column in zip(*counts.values(), strict=True)]
    table.append(["total", sum(totals), *totals])
    cells = [header, *[[row[0], *(f"{v:,}" for v in row[1:])] for row in table]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        f"source:  {ds.source}",
        f"sha256:  {ds.sha256}",
        f"cache:   {ds.cache_path or 'none'}",
        f"rows:    {len(ds):,}",
        "",
    ]
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([first, *rest]))
    return "\n".join(lines)
