"""The per-image release: ``ROOT/<split>/<emotion>/<file>.jpg|png`` of 48x48 images."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from fer_sweep.data._dataset import Parsed
from fer_sweep.errors import UserError
from fer_sweep.fer2013 import EMOTIONS, IMAGE_SIZE, SPLITS

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


def read_folder(root: Path) -> Parsed:
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
    return Parsed(images[order], labels[order], split[order], digest.hexdigest())


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
