"""Section 5.2's augmentation as one batched affine warp, on any Keras 3 backend.

Rotation within +-10 degrees, zoom within +-0.1 per axis and a horizontal flip with
probability 1/2 are one affine map per image about the image centre, so the whole batch is
resampled once: one gather of the four bilinear neighbours of every output pixel, written
in ``keras.ops`` so that it runs where the model runs (on a GPU with JAX, in the TensorFlow
graph on the CPU). Keras's RandomRotation/RandomZoom/RandomFlip layers resample three times
and were measured 110x slower than the network itself on a GPU (``../shared/device``).

The random draws are made on the host with NumPy from ``(seed, epoch)``
(:func:`draw_affine`), so the same seed and epoch give the same transforms on every backend
and after a resume, and the warp itself is deterministic. Interpolation and fill modes
follow TensorFlow's ``ImageProjectiveTransformV3`` (which Keras 2's ImageDataGenerator
semantics map to): the coordinate is mapped into the image by the fill mode first, then
read bilinearly, with neighbours outside the image reading 0.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from fer_sweep.config import TrainConfig

# Rows of the (n, 6) affine arrays: output pixel (x, y) -> input point
# (a0 x + a1 y + a2, b0 x + b1 y + b2), TensorFlow's projective-transform convention.
AFFINE_SIZE = 6
IDENTITY = np.array([1, 0, 0, 0, 1, 0], dtype="float32")


def augments(config: TrainConfig) -> bool:
    """Whether ``config`` asks for any geometric augmentation at all."""
    return config.augment and (
        config.rotation > 0
        or config.zoom > 0
        or config.hflip
        or config.translate > 0
        or config.crop_padding > 0
    )


def draw_affine(rng: np.random.Generator, n: int, size: int, config: TrainConfig) -> np.ndarray:
    """``(n, 6)`` float32 affine maps, output pixel -> input pixel, one per image.

    Each maps an output point ``p`` to ``c + R(theta) Z F (p - c)`` with ``c`` the image
    centre, ``theta`` uniform in +-rotation degrees, ``Z = diag(zx, zy)`` with each factor
    uniform in ``[1 - zoom, 1 + zoom]`` (drawn per axis, as Keras 2's ``zoom_range`` did) and
    ``F`` a horizontal flip with probability 1/2, then shifted by ``t``: uniform in
    +-``translate`` of the size per axis plus whole pixels in +-``crop_padding``. Always
    draws the same numbers per image, in the same order (the thesis's four first, the
    shifts after them), so turning one augmentation off does not change the draws of the
    others, and a run that shifts nothing draws what runs drew before shifts existed.
    """
    u = rng.random((n, 4))
    shift = (2.0 * rng.random((n, 2)) - 1.0) * config.translate * size
    shift += rng.integers(-config.crop_padding, config.crop_padding + 1, (n, 2))
    if not augments(config):
        return np.tile(IDENTITY, (n, 1))
    rad = math.radians(config.rotation)
    theta = (2.0 * u[:, 0] - 1.0) * rad
    zx = 1.0 + (2.0 * u[:, 1] - 1.0) * config.zoom
    zy = 1.0 + (2.0 * u[:, 2] - 1.0) * config.zoom
    if config.hflip:
        zx = np.where(u[:, 3] < 0.5, -zx, zx)
    cos, sin = np.cos(theta), np.sin(theta)
    # [[a0 a1], [b0 b1]] = R(theta) @ diag(zx, zy); the offsets keep the centre fixed.
    a0, a1 = cos * zx, -sin * zy
    b0, b1 = sin * zx, cos * zy
    c = (size - 1) / 2.0
    a2 = c - a0 * c - a1 * c + shift[:, 0]
    b2 = c - b0 * c - b1 * c + shift[:, 1]
    return np.stack([a0, a1, a2, b0, b1, b2], axis=1).astype("float32")


def _trunc(x):
    return ops.cast(ops.cast(x, "int32"), x.dtype)  # C's static_cast: toward zero


def _map_coordinate(x, length: int, fill_mode: str):
    """Map an input coordinate into ``[0, length - 1]`` as TensorFlow's fill modes do."""
    last = float(length - 1)
    if fill_mode == "constant":
        return x
    if fill_mode == "nearest":
        return ops.clip(x, 0.0, last)
    if fill_mode == "reflect":  # [abcd] -> [dcba|abcd|dcba]
        sz2 = 2.0 * length
        neg = ops.where(x < sz2, sz2 * _trunc(-x / sz2) + x, x)
        neg = ops.where(neg < -length, neg + sz2, -neg - 1.0)
        pos = x - sz2 * _trunc(x / sz2)
        pos = ops.where(pos >= length, sz2 - pos - 1.0, pos)
        x = ops.where(x < 0, neg, ops.where(x > last, pos, x))
        return ops.clip(x, 0.0, last)
    if fill_mode == "wrap":  # [abcd] -> [abcd|abcd|abcd]
        neg = x + length * (_trunc(-x / last) + 1.0)
        pos = x - length * _trunc(x / last)
        x = ops.where(x < 0, neg, ops.where(x > last, pos, x))
        return ops.clip(x, 0.0, last)
    raise ValueError(f"unknown fill_mode {fill_mode!r}")


def warp(images, affine, fill_mode: str = "nearest"):
    """Resample a float batch ``(n, h, w, c)`` through ``(n, 6)`` affine maps, bilinearly.

    One ``take_along_axis`` reads the four neighbours of every output pixel of the batch.
    """
    _, h, w, c = images.shape
    n = ops.shape(images)[0]
    ys, xs = np.meshgrid(
        np.arange(h, dtype="float32"), np.arange(w, dtype="float32"), indexing="ij"
    )
    xs, ys = ops.convert_to_tensor(xs.reshape(1, -1)), ops.convert_to_tensor(ys.reshape(1, -1))
    a = [affine[:, i : i + 1] for i in range(AFFINE_SIZE)]
    x = _map_coordinate(a[0] * xs + a[1] * ys + a[2], w, fill_mode)  # (n, h*w)
    y = _map_coordinate(a[3] * xs + a[4] * ys + a[5], h, fill_mode)
    x0, y0 = ops.floor(x), ops.floor(y)
    fx, fy = x - x0, y - y0
    corners = (
        (x0, y0, (1 - fx) * (1 - fy)),
        (x0 + 1, y0, fx * (1 - fy)),
        (x0, y0 + 1, (1 - fx) * fy),
        (x0 + 1, y0 + 1, fx * fy),
    )
    index, weight = [], []
    for cx, cy, wgt in corners:
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
        flat = ops.clip(cy, 0, h - 1) * w + ops.clip(cx, 0, w - 1)
        index.append(ops.cast(flat, "int32"))
        weight.append(ops.where(inside, wgt, ops.zeros_like(wgt)))  # outside reads 0
    index = ops.concatenate(index, axis=1)  # (n, 4 * h * w)
    weight = ops.reshape(ops.stack(weight, axis=1), (n, 4, h * w, 1))
    pixels = ops.reshape(images, (n, h * w, c))
    picked = ops.take_along_axis(pixels, ops.expand_dims(index, -1), axis=1)
    out = ops.sum(ops.reshape(picked, (n, 4, h * w, c)) * weight, axis=1)
    return ops.reshape(out, (n, h, w, c))


@keras.saving.register_keras_serializable(package="fer_sweep")
class AffineAugment(keras.layers.Layer):
    """Casts images to float32 and, in training only, warps them by the given affine maps.

    Its inputs are the image batch and the ``(n, 6)`` maps from :func:`draw_affine`; at
    inference the maps are ignored, so the network after it sees the images unchanged. A run
    without augmentation builds it with ``enabled=False``: its maps would all be the identity,
    so the warp is skipped rather than computed.
    """

    def __init__(self, fill_mode: str = "nearest", enabled: bool = True, **kwargs) -> None:
        # float32 whatever the policy: the warp's coordinates need the precision.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.fill_mode = fill_mode
        self.enabled = enabled

    def call(self, images, affine, training=None):
        images = ops.cast(images, "float32")
        if not (training and self.enabled):
            return images
        return warp(images, ops.cast(affine, "float32"), self.fill_mode)

    def compute_output_shape(self, images_shape, affine_shape=None):
        return images_shape

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode, "enabled": self.enabled}
