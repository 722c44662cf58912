"""The input pipeline: uint8 images in, batches of float images and labels out.

Section 5.2's augmentation (rotation +-10 deg, zoom +-0.1 per axis, horizontal flip, "nearest"
fill) runs on the training split only, in the tf.data pipeline rather than inside the model,
so the network that is evaluated and checkpointed is the bare thesis network and augmentation
of the next batches overlaps with the current training step.

The three augmentations are one affine map per image (rotation x zoom x flip about the image
centre), applied in a single ``ImageProjectiveTransformV3`` call per batch with bilinear
interpolation, as Keras's RandomRotation/RandomZoom do, instead of three layers that each
resample the batch. Its random draws are stateless, keyed by the run's seed and a per-batch
key from a seeded random dataset, so the batches of a seed repeat exactly even though
batches are augmented in parallel.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from fer_sweep.config import TrainConfig


def augments(config: TrainConfig) -> bool:
    """Whether ``config`` asks for any augmentation at all."""
    return config.augment and (config.rotation > 0 or config.zoom > 0 or config.hflip)


def affine_transforms(
    batch: tf.Tensor | int, size: int, config: TrainConfig, seed: tf.Tensor
) -> tf.Tensor:
    """``(batch, 8)`` projective transforms, output pixel -> input pixel, one per image.

    Each maps an output point ``p`` to ``c + R(theta) Z F (p - c)`` with ``c`` the image
    centre, ``theta`` uniform in +-rotation degrees, ``Z = diag(zx, zy)`` with each factor
    uniform in ``[1 - zoom, 1 + zoom]`` (drawn per axis, as Keras 2's ``zoom_range`` did) and
    ``F`` a horizontal flip with probability 1/2. ``seed`` is a stateless-random seed, shape (2,).
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    shape = tf.stack([batch])
    rad = config.rotation * math.pi / 180.0 if config.augment else 0.0
    z = config.zoom if config.augment else 0.0
    theta = tf.random.stateless_uniform(shape, seeds[0], -rad, rad)
    zoom = tf.random.stateless_uniform(tf.stack([batch, 2]), seeds[1], 1.0 - z, 1.0 + z)
    if config.augment and config.hflip:
        coin = tf.random.stateless_uniform(shape, seeds[2])
        flip = tf.where(coin < 0.5, -1.0, 1.0)
    else:
        flip = tf.ones(shape)
    cos, sin = tf.cos(theta), tf.sin(theta)
    zx, zy = zoom[:, 0] * flip, zoom[:, 1]
    # [[a0 a1], [b0 b1]] = R(theta) @ diag(zx, zy); the offsets keep the centre fixed.
    a0, a1 = cos * zx, -sin * zy
    b0, b1 = sin * zx, cos * zy
    c = (size - 1) / 2.0
    a2 = c - a0 * c - a1 * c
    b2 = c - b0 * c - b1 * c
    zeros = tf.zeros(shape)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images: tf.Tensor, config: TrainConfig, seed: tf.Tensor) -> tf.Tensor:
    """Rotate, zoom and flip a float batch ``(n, h, w, 1)`` in one resampling pass."""
    size = images.shape[1]
    transforms = affine_transforms(tf.shape(images)[0], size, config, seed)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=config.fill_mode.upper(),
    )


def _as_float(images: tf.Tensor, rescale: bool) -> tf.Tensor:
    x = tf.cast(images, "float32")
    return x * (1.0 / 255.0) if rescale else x


def train_batches(images: np.ndarray, labels: np.ndarray, config: TrainConfig) -> tf.data.Dataset:
    """Shuffled, augmented, rescaled training batches; reshuffled every epoch from the seed."""
    x = images[..., None]
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype("int32")))
    ds = ds.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size)
    if not augments(config):
        return ds.map(
            lambda xb, yb: (_as_float(xb, config.rescale), yb),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)

    # One stateless key per batch, new every epoch, the same sequence for the same seed.
    keys = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2)

    def transform(batch, key):
        xb, yb = batch
        seed = tf.stack([tf.constant(config.seed, tf.int64), key[0] ^ key[1]])
        return augment_batch(_as_float(xb, config.rescale), config, seed), yb

    ds = tf.data.Dataset.zip((ds, keys))
    # Stateless draws make the result independent of which thread augments which batch.
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(
    images: np.ndarray, labels: np.ndarray, config: TrainConfig, *, batch_size: int = 256
) -> tf.data.Dataset:
    """Rescaled, unaugmented batches in file order (PublicTest and PrivateTest)."""
    x = images[..., None]
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype("int32"))).batch(batch_size)
    ds = ds.map(
        lambda xb, yb: (_as_float(xb, config.rescale), yb),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
