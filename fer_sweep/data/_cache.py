"""The HDF5 cache of a parsed source, and when it still stands.

The first load of a source converts it to an HDF5 file (under ``FER_SWEEP_CACHE``, else
``~/.cache/fer-sweep``), never next to the source; later loads read the cache while the
source's size and modification time are unchanged. A damaged cache is rebuilt, never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

import h5py
import numpy as np

from fer_sweep.data._dataset import Dataset, Parsed
from fer_sweep.data._folder import IMAGE_SUFFIXES
from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, SPLITS
from fer_sweep.settings import CACHE_ENV, cache_dir_from

# Bump when the cache layout or the parsing rules change, so old caches are rebuilt.
log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


def cache_folder(explicit: str | os.PathLike | None) -> Path:
    """The cache folder: ``explicit``, else $FER_SWEEP_CACHE, else ~/.cache/fer-sweep.

    Commands that resolve :class:`fer_sweep.settings.Settings` pass its ``cache_dir``; the
    environment is read here only for direct library use (one rule, in settings).
    """
    return cache_dir_from(explicit, os.environ)


def cache_name(source: Path) -> str:
    """A cache file name unique to the resolved source path, readable by its stem."""
    digest = hashlib.sha256(str(source).encode("utf-8")).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name) or "source"
    return f"{stem}-{digest}.h5"


def source_fingerprint(source: Path, given: Path) -> dict[str, int]:
    """What must be unchanged for the cache to stand: size, mtime_ns and file count.

    For a folder these are the total size of its images, the newest mtime of the images and
    of the folders (folders change when files are added or removed) and the image count.
    """
    try:
        if not source.is_dir():
            st = source.stat()
            return {"source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns, "source_files": 1}
        size, newest, count = 0, source.stat().st_mtime_ns, 0
        for folder, _dirs, files in os.walk(source):
            newest = max(newest, os.stat(folder).st_mtime_ns)
            for name in files:
                if name.lower().endswith(IMAGE_SUFFIXES):
                    st = os.stat(os.path.join(folder, name))
                    size, newest, count = size + st.st_size, max(newest, st.st_mtime_ns), count + 1
        return {"source_size": size, "source_mtime_ns": newest, "source_files": count}
    except OSError as e:
        raise UserError(f"cannot read {given}: {e.strerror or e}") from e


def read_cache(cache_file: Path, source: Path, fingerprint: dict[str, int]) -> Dataset | None:
    """The cached Dataset, or None when the cache is missing, stale or unreadable."""
    if not cache_file.is_file():
        return None
    # A cache can be damaged in any number of ways (truncated, foreign, hand-edited); all of
    # them mean "rebuild", never an error, so every failure to read it is treated alike.
    try:
        with h5py.File(cache_file, "r") as f:
            attrs = f.attrs
            if int(attrs["format_version"]) != CACHE_FORMAT_VERSION:
                return None
            if str(attrs["source"]) != str(source):
                return None
            if any(int(attrs[key]) != value for key, value in fingerprint.items()):
                return None
            images, labels, split = f["images"][()], f["labels"][()], f["split"][()]
            sha256 = str(attrs["sha256"])
        if images.dtype != np.uint8 or labels.dtype != np.uint8 or split.dtype != np.uint8:
            return None
        if len(labels) == 0 or labels.max() >= len(EMOTIONS) or split.max() >= len(SPLITS):
            return None
        return Dataset(images, labels, split, str(source), sha256, str(cache_file))
    except Exception as e:
        log.warning("rebuilding the unreadable data cache %s (%s)", cache_file, e)
        return None


def write_cache(
    cache_file: Path, parsed: Parsed, source: Path, fingerprint: dict[str, int]
) -> None:
    """Write the cache through a temp file and os.replace, so no reader sees half a cache."""
    tmp_name = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            dir=cache_file.parent, prefix=cache_file.name, suffix=".tmp"
        )
        os.close(fd)
        with h5py.File(tmp_name, "w") as f:
            f.create_dataset("images", data=parsed.images)
            f.create_dataset("labels", data=parsed.labels)
            f.create_dataset("split", data=parsed.split)
            f.attrs["format_version"] = CACHE_FORMAT_VERSION
            f.attrs["source"] = str(source)
            f.attrs["sha256"] = parsed.sha256
            f.attrs["emotions"] = ",".join(EMOTIONS)
            f.attrs["splits"] = ",".join(SPLITS)
            for key, value in fingerprint.items():
                f.attrs[key] = value
        os.replace(tmp_name, cache_file)
        tmp_name = None
    except OSError as e:
        raise UserError(
            f"cannot write the data cache {cache_file}: {e.strerror or e}; "
            f"set {CACHE_ENV} to a writable folder"
        ) from e
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
