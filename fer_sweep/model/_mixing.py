"""Random erasing, mixup and cutmix: drawn on the host, applied inside the training model.

Like the affine warp (:mod:`._augment`), every random number is drawn with NumPy from the
epoch's own generator, so the same ``(seed, epoch)`` erases and mixes the same images on
every backend and after a resume; the layers only apply what they are given, in
``keras.ops``, after the warp and only in training. Boxes are ``(top, left, bottom, right)``
in pixels of the 48 px image, bottom and right exclusive, and lie inside the window the
network sees (its centre ``crop``), as torchvision erases and cuts the crop itself.

- Erasing (torchvision's ``RandomErasing``): with probability ``erasing`` an image gets one
  box of 2-33 % of the window's area and aspect ratio 0.3-3.3 (log-uniform), tried up to 10
  times until it fits, set to 0 (black).
- Mixup: a batch is mixed with a shuffle of itself, ``lam * x + (1 - lam) * x[partner]``,
  ``lam ~ Beta(alpha, alpha)`` once per batch, the one-hot labels alike.
- Cutmix: the shuffled batch's pixels inside one box per batch replace the image's; the box
  covers ``1 - lam`` of the window and the labels are weighted by the area each keeps.

With both mixup and cutmix each batch is one or the other with probability 1/2 (timm's
switch). A mix is one row of :data:`MIX_SIZE` numbers per image: the weight of the image
itself outside the box and inside it, then the box.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops

from fer_sweep.model._architectures import crop_origin

if TYPE_CHECKING:
    from fer_sweep.config import TrainConfig

BOX_SIZE = 4  # top, left, bottom, right
MIX_SIZE = 2 + BOX_SIZE  # weight outside the box, weight inside it, the box
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
ERASE_ATTEMPTS = 10
NO_BOX = (0.0, 0.0, 0.0, 0.0)


def erases(config: TrainConfig) -> bool:
    return config.augment and config.erasing > 0


def mixes(config: TrainConfig) -> bool:
    return config.augment and (config.mixup_alpha > 0 or config.cutmix_alpha > 0)


def _window(config: TrainConfig, size: int) -> tuple[int, int]:
    """(origin, side) of the square the network sees: its centre crop, or all of it."""
    side = config.crop or size
    return crop_origin(config.crop, size), side


def draw_erasing(rng: np.random.Generator, n: int, size: int, config: TrainConfig) -> np.ndarray:
    """``(n, 4)`` float32 boxes to erase, one per image (an empty box: none). Always draws
    the same numbers per image, so the boxes do not depend on which images are erased."""
    origin, side = _window(config, size)
    area = side * side
    coin = rng.random(n)
    scale = rng.uniform(*ERASE_SCALE, (n, ERASE_ATTEMPTS)) * area
    ratio = np.exp(rng.uniform(*np.log(ERASE_RATIO), (n, ERASE_ATTEMPTS)))
    spot = rng.random((n, ERASE_ATTEMPTS, 2))
    h = np.round(np.sqrt(scale * ratio)).astype(int)
    w = np.round(np.sqrt(scale / ratio)).astype(int)
    fits = (h < side) & (w < side)
    boxes = np.tile(np.array(NO_BOX, "float32"), (n, 1))
    for i in np.flatnonzero((coin < config.erasing) & fits.any(axis=1)):
        k = int(np.argmax(fits[i]))  # the first attempt that fits
        top = origin + int(spot[i, k, 0] * (side - h[i, k] + 1))
        left = origin + int(spot[i, k, 1] * (side - w[i, k] + 1))
        boxes[i] = (top, left, top + h[i, k], left + w[i, k])
    return boxes


def draw_mixing(
    rng: np.random.Generator, n: int, size: int, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of ``n`` images: each one's partner (an index into the batch), its mix row
    (``(n, MIX_SIZE)`` float32) and the weight its own label keeps (``(n,)``). Draws the same
    numbers whichever of mixup and cutmix the batch turns out to be."""
    origin, side = _window(config, size)
    partner = rng.permutation(n)
    pick, u_lam, centre = rng.random(), rng.random(), rng.random(2)
    both = config.mixup_alpha > 0 and config.cutmix_alpha > 0
    cut = config.cutmix_alpha > 0 and (not both or pick < 0.5)
    alpha = config.cutmix_alpha if cut else config.mixup_alpha
    lam = float(_beta_quantile(u_lam, alpha))
    if not cut:
        mix = np.tile(np.array([lam, lam, *NO_BOX], "float32"), (n, 1))
        return partner, mix, np.full(n, lam, "float32")
    # A box of sqrt(1 - lam) of the window's side about a uniform centre, clipped to it.
    half = side * math.sqrt(1.0 - lam) / 2.0
    cy, cx = origin + centre * side
    top, bottom = (int(np.clip(round(v), origin, origin + side)) for v in (cy - half, cy + half))
    left, right = (int(np.clip(round(v), origin, origin + side)) for v in (cx - half, cx + half))
    kept = 1.0 - (bottom - top) * (right - left) / (side * side)
    mix = np.tile(np.array([1.0, 0.0, top, left, bottom, right], "float32"), (n, 1))
    return partner, mix, np.full(n, kept, "float32")


def _beta_quantile(u: float, alpha: float) -> float:
    """A Beta(alpha, alpha) draw from one uniform number (its inverse CDF), so that the
    draws stay one number per batch whatever alpha is."""
    from scipy.stats import beta

    return float(beta.ppf(u, alpha, alpha))


def mixed_labels(labels: np.ndarray, partner: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """One-hot ``(n, 7)`` float32 targets: ``keep`` of each image's class, the rest of its
    partner's."""
    from fer_sweep.fer2013 import NUM_CLASSES

    eye = np.eye(NUM_CLASSES, dtype="float32")
    return keep[:, None] * eye[labels] + (1.0 - keep[:, None]) * eye[labels[partner]]


def _inside(boxes, height: int, width: int):
    """``(n, h, w, 1)`` float32: 1 inside each image's box, 0 outside."""
    ys = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1, 1))
    xs = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width, 1))

    def edge(i):
        return ops.reshape(boxes[:, i], (-1, 1, 1, 1))

    inside = (ys >= edge(0)) & (ys < edge(2)) & (xs >= edge(1)) & (xs < edge(3))
    return ops.cast(inside, "float32")


@keras.saving.register_keras_serializable(package="fer_sweep")
class EraseBoxes(keras.layers.Layer):
    """Sets each image's box to 0, in training only (at inference the boxes are ignored)."""

    def __init__(self, **kwargs) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, images, boxes, training=None):
        if not training:
            return images
        _, h, w, _ = images.shape
        return images * (1.0 - _inside(ops.cast(boxes, "float32"), h, w))

    def compute_output_shape(self, images_shape, boxes_shape=None):
        return images_shape


@keras.saving.register_keras_serializable(package="fer_sweep")
class MixPairs(keras.layers.Layer):
    """Mixes each image with its partner in the batch by its mix row, in training only."""

    def __init__(self, **kwargs) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, images, partner, mix, training=None):
        if not training:
            return images
        _, h, w, _ = images.shape
        mix = ops.cast(mix, "float32")
        inside = _inside(mix[:, 2:], h, w)
        own = ops.reshape(mix[:, 0], (-1, 1, 1, 1)) * (1.0 - inside)
        own += ops.reshape(mix[:, 1], (-1, 1, 1, 1)) * inside
        other = ops.take(images, ops.cast(partner, "int32"), axis=0)
        return own * images + (1.0 - own) * other

    def compute_output_shape(self, images_shape, partner_shape=None, mix_shape=None):
        return images_shape
