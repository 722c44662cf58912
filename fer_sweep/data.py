"""FER-2013 sources, their validation, the HDF5 cache and stratified subsets.

Three source layouts are read, all to the same arrays:

- the Kaggle CSV ``emotion,pixels,Usage`` (extra columns are ignored);
- the same CSV gzip-compressed (recognised by its magic bytes, whatever the suffix);
- a per-image folder ``ROOT/<split>/<emotion>/<file>.jpg|png`` of 48x48 images.

The first load of a source converts it to an HDF5 cache (under ``FER_SWEEP_CACHE``, else
``~/.cache/fer-sweep``), never next to the source; later loads read the cache while the
source's size and modification time are unchanged. Every problem with the input raises
:class:`~fer_sweep.errors.UserError` naming the file, the line where there is one, and the
problem.

Example::

    ds = load_dataset("data/fer2013.csv.gz")
    x_train, y_train = ds.arrays("Training")
    small = stratified_subset(ds, 500, seed=1)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import h5py
import numpy as np
import pandas as pd
from PIL import Image

from fer_sweep.errors import UserError
from fer_sweep.settings import CACHE_ENV, cache_dir_from

__all__ = [
    "EMOTIONS",
    "IMAGE_SIZE",
    "SPLITS",
    "Dataset",
    "check_report",
    "load_dataset",
    "resolve_data_path",
    "stratified_subset",
    "write_synthetic_csv",
]

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIZE = 48

PIXELS = IMAGE_SIZE * IMAGE_SIZE
CSV_COLUMNS = ("emotion", "pixels", "Usage")
DATA_ENV = "FER2013_DATA"
DEFAULT_DATA_PATHS = (Path("data/fer2013.csv"), Path("data/fer2013.csv.gz"))
KAGGLE_CHALLENGE = "challenges-in-representation-learning-facial-expression-recognition-challenge"
# Bump when the cache layout or the parsing rules change, so old caches are rebuilt.
CACHE_FORMAT_VERSION = 1

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLIT_FOLDERS = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}

log = logging.getLogger(__name__)


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


# --- where the data is ------------------------------------------------------------------


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


# --- loading and the cache --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Parsed:
    """What a source reader returns; load_dataset adds the paths."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    sha256: str


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
    fingerprint = _fingerprint(source, given)
    cache_file = _cache_dir(cache_dir) / _cache_name(source) if use_cache else None
    if cache_file is not None:
        cached = _read_cache(cache_file, source, fingerprint)
        if cached is not None:
            return cached
    log.info("reading %s", given)
    parsed = _read_source(given)
    if cache_file is not None:
        _write_cache(cache_file, parsed, source, fingerprint)
    return Dataset(
        images=parsed.images,
        labels=parsed.labels,
        split=parsed.split,
        source=str(source),
        sha256=parsed.sha256,
        cache_path=None if cache_file is None else str(cache_file),
    )


def _read_source(path: Path) -> _Parsed:
    """Parse a source of either layout: a folder of images, or a CSV (plain or gzipped)."""
    if path.is_dir():
        return _read_folder(path)
    return _read_csv_file(path)


def _cache_dir(explicit: str | os.PathLike | None) -> Path:
    """The cache folder: ``explicit``, else $FER_SWEEP_CACHE, else ~/.cache/fer-sweep.

    Commands that resolve :class:`fer_sweep.settings.Settings` pass its ``cache_dir``; the
    environment is read here only for direct library use (one rule, in settings).
    """
    return cache_dir_from(explicit, os.environ)


def _cache_name(source: Path) -> str:
    """A cache file name unique to the resolved source path, readable by its stem."""
    digest = hashlib.sha256(str(source).encode("utf-8")).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name) or "source"
    return f"{stem}-{digest}.h5"


def _fingerprint(source: Path, given: Path) -> dict[str, int]:
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


def _read_cache(cache_file: Path, source: Path, fingerprint: dict[str, int]) -> Dataset | None:
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


def _write_cache(
    cache_file: Path, parsed: _Parsed, source: Path, fingerprint: dict[str, int]
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


# --- CSV --------------------------------------------------------------------------------


# ASCII digits only: int() alone would also accept other scripts' digits and underscores.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_PARSER_LINE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _int_or_none(token: str) -> int | None:
    """The integer an ASCII decimal token spells, or None."""
    token = token.strip()
    return int(token) if _INTEGER.fullmatch(token) else None


class _Csv:
    """The (gunzipped) bytes of one CSV file, and how to name the line of one of its rows."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def line_of_byte(self, offset: int) -> int:
        """The 1-based line number holding byte ``offset``."""
        return self.data.count(b"\n", 0, offset) + 1

    def first_line(self) -> tuple[int, str]:
        """(line number, text) of the first non-blank line: the header, as pandas finds it."""
        for number, raw_line in enumerate(io.BytesIO(self.data), start=1):
            line = raw_line.decode("utf-8-sig", errors="replace")
            if line.strip():
                return number, line
        raise UserError(f"{self.name} is empty")

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of every non-blank record, header first, as pandas sees them."""
        text = self.data.decode("utf-8-sig", errors="replace")
        reader = csv.reader(io.StringIO(text, newline=""))
        for fields in reader:
            # pandas skips blank and whitespace-only lines, so they do not count as rows.
            if len(fields) <= 1 and not "".join(fields).strip():
                continue
            yield reader.line_num, fields

    def fail(self, row: int, problem: str) -> NoReturn:
        """Raise the UserError for data row ``row`` (0-based, header excluded).

        A row with fewer fields than the header is reported as such, since pandas pads it
        and the field-level problem would only be a symptom.
        """
        header: list[str] = []
        for index, (line, fields) in enumerate(self.records()):
            if index == 0:
                header = fields
            elif index == row + 1:
                if len(fields) != len(header):
                    problem = f"{len(fields)} fields, but the header has {len(header)}"
                raise UserError(f"{self.name} line {line}: {problem}")
        raise UserError(f"{self.name}: {problem} (in data row {row + 1})")


def _read_csv_file(path: Path) -> _Parsed:
    """Parse a Kaggle-schema CSV, plain or gzipped, validating every field."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {name}: {e.strerror or e}") from e
    sha256 = hashlib.sha256(raw).hexdigest()
    data = _decompress(raw, name)
    del raw
    _check_text(data, name)
    source = _Csv(name, data)
    header = _check_header(source)
    parsed = _parse_table(source, header, _read_table(source))
    return replace(parsed, sha256=sha256)


def _decompress(raw: bytes, name: str) -> bytes:
    """The CSV bytes: gunzipped when the gzip magic bytes are there, else ``raw`` itself."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{name}: truncated or corrupt gzip file ({e})") from e
    if _is_blank(data):
        raise UserError(f"{name} is empty (an empty file inside the gzip)")
    return data


def _is_blank(data: bytes) -> bool:
    """Only whitespace (or nothing); stops at the first other byte instead of copying."""
    return re.search(rb"\S", data) is None


def _check_text(data: bytes, name: str) -> None:
    """Refuse empty files, archives and binary files before handing them to the CSV parser."""
    if _is_blank(data):
        raise UserError(f"{name} is empty")
    if data.startswith(b"PK\x03\x04"):
        raise UserError(f"{name} is a zip archive, not a CSV; unzip it and pass the fer2013.csv")
    if data[257:262] == b"ustar":
        raise UserError(f"{name} is a tar archive, not a CSV; extract it and pass the fer2013.csv")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise UserError(f"{name} is not a text CSV file (binary data on line {line})")


def _check_header(source: _Csv) -> list[str]:
    """The header's field names, which must include emotion, pixels and Usage.

    Checked before the full parse so that a wrong file is named as such, not by the first
    row whose field count differs from its header.
    """
    number, line = source.first_line()
    header = [field.strip() for field in next(csv.reader([line]))]
    missing = [column for column in CSV_COLUMNS if column not in header]
    if missing:
        raise UserError(
            f"{source.name} line {number}: missing column(s) {', '.join(missing)}; the header "
            f"must have {', '.join(CSV_COLUMNS)} (it has {', '.join(header)})"
        )
    return header


def _read_table(source: _Csv) -> pd.DataFrame:
    """The data rows, every field a string, the header row dropped."""
    try:
        # header=None keeps pandas from guessing an index column when a row is too long:
        # every row, the header too, must then have the header's field count.
        table = pd.read_csv(
            io.BytesIO(source.data),
            header=None,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            index_col=False,
            encoding="utf-8",
        )
    except UnicodeDecodeError:
        try:
            source.data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = source.line_of_byte(e.start)
            raise UserError(
                f"{source.name} line {line}: not UTF-8 text (byte 0x{source.data[e.start]:02x}); "
                "is this the FER-2013 CSV?"
            ) from e
        raise
    except pd.errors.EmptyDataError as e:
        raise UserError(f"{source.name} is empty") from e
    except pd.errors.ParserError as e:
        match = _PARSER_LINE.search(str(e))
        if match:
            expected, line, saw = match.groups()
            raise UserError(
                f"{source.name} line {line}: {saw} fields, but the header has {expected}"
            ) from e
        detail = str(e).strip().splitlines()[-1]
        raise UserError(f"{source.name}: not a valid CSV file ({detail})") from e
    if len(table) == 1:
        raise UserError(f"{source.name} has a header but no data rows")
    return table.iloc[1:]


def _parse_table(source: _Csv, header: list[str], table: pd.DataFrame) -> _Parsed:
    """Images, labels and split from the string columns, every field checked."""
    # By position: the first column of a name wins when a header repeats it.
    columns = {name: table.iloc[:, header.index(name)].tolist() for name in CSV_COLUMNS}
    labels = _parse_labels(source, columns["emotion"])
    split = _parse_usage(source, columns["Usage"])
    images = _parse_pixels(source, columns["pixels"])
    return _Parsed(images, labels, split, sha256="")


def _parse_labels(source: _Csv, values: list[str]) -> np.ndarray:
    """Labels 0..6; the fast path takes exact digits, the slow path anything int() would."""
    codes = pd.Categorical(values, categories=[str(k) for k in range(len(EMOTIONS))]).codes
    codes = codes.astype(np.int16)
    for row in np.flatnonzero(codes < 0):
        value = _int_or_none(values[row])
        if value is None:
            source.fail(row, f"label {values[row]!r} is not an integer")
        if not 0 <= value < len(EMOTIONS):
            source.fail(row, f"label {value} is not in 0-6")
        codes[row] = value
    return codes.astype(np.uint8)


def _parse_usage(source: _Csv, values: list[str]) -> np.ndarray:
    """Split indexes from the Usage column; surrounding spaces are tolerated."""
    codes = pd.Categorical(values, categories=list(SPLITS)).codes.astype(np.int16)
    for row in np.flatnonzero(codes < 0):
        value = values[row].strip()
        if value not in SPLITS:
            source.fail(row, f"unknown Usage {value!r}; expected {', '.join(SPLITS)}")
        codes[row] = SPLITS.index(value)
    return codes.astype(np.uint8)


def _parse_pixels(source: _Csv, values: list[str]) -> np.ndarray:
    """(N, 48, 48) uint8 from the space-separated pixel strings, parsed in one go.

    Rows are checked in bulk: the separator count per row, one np.fromstring over all rows
    joined, and one range check. Only when a bulk check fails is the offending row looked
    for, so a valid file costs no per-token Python work.
    """
    n = len(values)
    separators = np.fromiter((s.count(" ") for s in values), dtype=np.int64, count=n)
    for row in np.flatnonzero(separators != PIXELS - 1):
        # Irregular spacing is fine as long as the row still holds 2,304 tokens.
        count = len(values[row].split())
        if count != PIXELS:
            source.fail(row, f"pixels has {count:,} values, expected {PIXELS:,}")
    pixels = _fromstring(" ".join(values))
    if pixels is None or pixels.size != n * PIXELS:
        _fail_on_bad_token(source, values)
    if pixels.min() < 0 or pixels.max() > 255:
        first = int(np.flatnonzero((pixels < 0) | (pixels > 255))[0])
        row, column = divmod(first, PIXELS)
        source.fail(row, f"pixel {column + 1} is {pixels[first]}, outside 0-255")
    return pixels.astype(np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def _fromstring(text: str) -> np.ndarray | None:
    """Whitespace-separated integers, or None when a token is not one."""
    # numpy stops at the first bad token and only warns (DeprecationWarning, a ValueError in
    # later versions); both are turned into None so the caller can find the token.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _fail_on_bad_token(source: _Csv, values: list[str]) -> NoReturn:
    """Find the first pixel token that is not an integer 0-255 and raise for it."""
    for row, text in enumerate(values):
        parsed = _fromstring(text)
        if parsed is not None and parsed.size == PIXELS:
            continue
        for column, token in enumerate(text.split()):
            value = _int_or_none(token)
            if value is None:
                source.fail(row, f"pixel {column + 1} is {token[:20]!r}, not an integer")
            if not 0 <= value <= 255:
                source.fail(row, f"pixel {column + 1} is {value}, outside 0-255")
    raise UserError(f"{source.name}: the pixels column cannot be read as integers")


# --- folders of images ------------------------------------------------------------------


def _read_folder(root: Path) -> _Parsed:
    """Read ROOT/<split>/<emotion>/<image>, ordered by split, then file name.

    The split comes from a Training_/PublicTest_/PrivateTest_ file-name prefix when there is
    one (the common JPEG release keeps the original Usage that way), else from the split
    folder's name. Images must be 48x48; they are read as greyscale. The sha256 covers the
    sorted relative paths and the bytes of every image.
    """
    files = sorted(_image_files(root), key=lambda item: item[0].relative_to(root).as_posix())
    if not files:
        raise UserError(
            f"{root}: no images found; expected ROOT/<split>/<emotion>/<image>.jpg|png, "
            "e.g. train/happy/Training_0.jpg"
        )
    digest = hashlib.sha256()
    images = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.uint8)
    split = np.empty(len(files), dtype=np.uint8)
    for i, (file, label) in enumerate(files):
        data = _read_image_bytes(file)
        relative = file.relative_to(root).as_posix().encode("utf-8")
        digest.update(relative + b"\0" + len(data).to_bytes(8, "little"))
        digest.update(data)
        images[i] = _decode_image(file, data)
        labels[i] = label
        split[i] = SPLITS.index(_split_of(file))
    order = sorted(range(len(files)), key=lambda i: (split[i], _natural_key(files[i][0].name)))
    return _Parsed(images[order], labels[order], split[order], digest.hexdigest())


def _image_files(root: Path) -> Iterator[tuple[Path, int]]:
    """(image path, label) for every image under ROOT/<split>/<emotion>/."""
    for split_dir in _subfolders(root):
        for emotion_dir in _subfolders(split_dir):
            key = emotion_dir.name.lower()
            if key not in EMOTIONS:
                raise UserError(
                    f"{emotion_dir}: unknown emotion folder {emotion_dir.name!r}; "
                    f"expected one of {', '.join(EMOTIONS)}"
                )
            for file in emotion_dir.iterdir():
                if _is_image_file(file):
                    yield file, EMOTIONS.index(key)


def _is_image_file(file: Path) -> bool:
    """A visible .jpg/.jpeg/.png file; anything else in an emotion folder is ignored."""
    return (
        file.suffix.lower() in IMAGE_SUFFIXES and not file.name.startswith(".") and file.is_file()
    )


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError as e:
        raise UserError(f"cannot read the folder {folder}: {e.strerror or e}") from e


def _split_of(file: Path) -> str:
    """The split of one image: its file-name prefix, else its split folder's name."""
    for name in SPLITS:
        if file.name.startswith(name + "_"):
            return name
    folder = file.parent.parent.name
    if folder.lower() in SPLIT_FOLDERS:
        return SPLIT_FOLDERS[folder.lower()]
    raise UserError(
        f"{file}: cannot tell its split: no Training_/PublicTest_/PrivateTest_ prefix and "
        f"the folder {folder!r} is not train, val, validation or test"
    )


def _read_image_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the image {file}: {e.strerror or e}") from e


def _decode_image(file: Path, data: bytes) -> np.ndarray:
    """A 48x48 greyscale image; other sizes are refused rather than silently resized."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                width, height = image.size
                raise UserError(
                    f"{file}: image is {width}x{height}, refused: only "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE} images are accepted (nothing is resized)"
                )
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except UserError:
        raise
    # PIL reports bad images through several types (SyntaxError from some decoders).
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"{file}: cannot read the image ({e})") from e


def _natural_key(name: str) -> tuple:
    """Sort key where digit runs compare as numbers: Training_2 before Training_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


# --- subsets ----------------------------------------------------------------------------


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


# --- synthetic data ---------------------------------------------------------------------


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


# --- report -----------------------------------------------------------------------------


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
