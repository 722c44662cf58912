"""The input pipeline: uint8 images in, batches of float images and labels out.

Section 5.2's augmentation (rotation +-10 deg, zoom +-0.1, horizontal flip, "nearest" fill) runs
on the training split only, in the tf.data pipeline rather than inside the model, so the
network that is evaluated and checkpointed is the bare thesis network and augmentation of the
next batches overlaps with the current training step.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer_sweep.config import TrainConfig


def augmentation_layers(config: TrainConfig) -> keras.Sequential | None:
    """The thesis's augmentation as Keras preprocessing layers, or None when all are off."""
    layers: list[keras.layers.Layer] = []
    seed = config.seed
    if config.augment and config.rotation > 0:
        layers.append(
            keras.layers.RandomRotation(
                config.rotation / 360.0, fill_mode=config.fill_mode, seed=seed
            )
        )
    if config.augment and config.zoom > 0:
        # Keras 2's ImageDataGenerator(zoom_range=z) drew the two axes independently.
        z = (-config.zoom, config.zoom)
        layers.append(keras.layers.RandomZoom(z, z, fill_mode=config.fill_mode, seed=seed + 1))
    if config.augment and config.hflip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 2))
    return keras.Sequential(layers, name="augmentation") if layers else None


def _as_float(images: tf.Tensor, rescale: bool) -> tf.Tensor:
    x = tf.cast(images, "float32")
    return x / 255.0 if rescale else x


def train_batches(images: np.ndarray, labels: np.ndarray, config: TrainConfig) -> tf.data.Dataset:
    """Shuffled, augmented, rescaled training batches; reshuffled every epoch from the seed."""
    x = images[..., None]
    aug = augmentation_layers(config)
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype("int32")))
    ds = ds.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size)

    def transform(xb, yb):
        xb = _as_float(xb, config.rescale)
        if aug is not None:
            xb = aug(xb, training=True)
        return xb, yb

    # One map call at a time keeps the random draws in a fixed order, so a seed repeats a run.
    ds = ds.map(transform, num_parallel_calls=1, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_batches(
    images: np.ndarray, labels: np.ndarray, config: TrainConfig, *, batch_size: int = 256
) -> tf.data.Dataset:
    """Rescaled, unaugmented batches in file order (PublicTest and PrivateTest)."""
    x = images[..., None]
    ds = tf.data.Dataset.from_tensor_slices((x, labels.astype("int32"))).batch(batch_size)
    ds = ds.map(lambda xb, yb: (_as_float(xb, config.rescale), yb))
    return ds.prefetch(tf.data.AUTOTUNE)
