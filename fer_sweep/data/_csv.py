"""The Kaggle CSV ``emotion,pixels,Usage``, plain or gzipped, and its validation.

Extra columns are ignored; gzip is recognised by its magic bytes, whatever the suffix. Every
problem raises :class:`~fer_sweep.errors.UserError` naming the file, the line and the problem.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from fer_sweep.data._dataset import Parsed
from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, IMAGE_SIZE, SPLITS

PIXELS = IMAGE_SIZE * IMAGE_SIZE


CSV_COLUMNS = ("emotion", "pixels", "Usage")


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


def read_csv_file(path: Path) -> Parsed:
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


def _parse_table(source: _Csv, header: list[str], table: pd.DataFrame) -> Parsed:
    """Images, labels and split from the string columns, every field checked."""
    # By position: the first column of a name wins when a header repeats it.
    columns = {name: table.iloc[:, header.index(name)].tolist() for name in CSV_COLUMNS}
    labels = _parse_labels(source, columns["emotion"])
    split = _parse_usage(source, columns["Usage"])
    images = _parse_pixels(source, columns["pixels"])
    return Parsed(images, labels, split, sha256="")


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
