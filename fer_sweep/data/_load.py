"""Where the data is, and loading it: the source read once, then the HDF5 cache.

Example::

    ds = load_dataset("data/fer2013.csv.gz")
    x_train, y_train = ds.arrays("Training")
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fer_sweep.data._cache import (
    cache_folder,
    cache_name,
    read_cache,
    source_fingerprint,
    write_cache,
)
from fer_sweep.data._csv import read_csv_file
from fer_sweep.data._dataset import Dataset, Parsed
from fer_sweep.data._folder import read_folder
from fer_sweep.errors import UserError

DATA_ENV = "FER2013_DATA"


DEFAULT_DATA_PATHS = (Path("data/fer2013.csv"), Path("data/fer2013.csv.gz"))


KAGGLE_CHALLENGE = "challenges-in-representation-learning-facial-expression-recognition-challenge"


log = logging.getLogger(__name__)


def resolve_data_path(explicit: str | os.PathLike | None = None) -> Path:
    """The dataset path: ``explicit`` (--data), else $FER2013_DATA, else data/fer2013.csv(.gz).

    The defaults are relative to the current directory. A path that was asked for but does
    not exist is an error; so is finding nothing, with a hint where to get the data.
    """
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.exists():
            raise UserError(f"data path {path} does not exist")
        return path
    env = os.environ.get(DATA_ENV, "")
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise UserError(f"{DATA_ENV}={env}: no such file or folder")
        return path
    for path in DEFAULT_DATA_PATHS:
        if path.exists():
            return path
    raise UserError(
        f"no FER-2013 data found: download fer2013.csv from Kaggle ({KAGGLE_CHALLENGE}) "
        f"and put it at data/fer2013.csv (gzipped as data/fer2013.csv.gz is fine), "
        f"or pass --data PATH or set {DATA_ENV}"
    )


def load_dataset(
    path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Dataset:
    """Read FER-2013 from ``path`` (see :func:`resolve_data_path`), through the HDF5 cache.

    The cache file is named after the resolved source path and remembers the source's size
    and mtime: when both still match it is read instead of the source (the source is not
    re-hashed, so a cached load stays well under a second); otherwise, or when the cache is
    unreadable, the source is parsed again and the cache rewritten atomically. With
    ``use_cache=False`` no cache is read or written.
    """
    given = resolve_data_path(path)
    source = given.resolve()
    # Taken before the parse: a source edited mid-parse then fails the next freshness check
    # instead of passing it with the old content cached.
    fingerprint = source_fingerprint(source, given)
    cache_file = cache_folder(cache_dir) / cache_name(source) if use_cache else None
    if cache_file is not None:
        cached = read_cache(cache_file, source, fingerprint)
        if cached is not None:
            return cached
    log.info("reading %s", given)
    parsed = _read_source(given)
    if cache_file is not None:
        write_cache(cache_file, parsed, source, fingerprint)
    return Dataset(
        images=parsed.images,
        labels=parsed.labels,
        split=parsed.split,
        source=str(source),
        sha256=parsed.sha256,
        cache_path=None if cache_file is None else str(cache_file),
    )


def _read_source(path: Path) -> Parsed:
    """Parse a source of either layout: a folder of images, or a CSV (plain or gzipped)."""
    if path.is_dir():
        return read_folder(path)
    return read_csv_file(path)
