"""The input pipeline: uint8 images in, training batches out, the same on every backend.

Every batch is a pure function of ``(seed, epoch, batch index)``: the shuffle order of an
epoch and its augmentation draws come from NumPy generators keyed by ``(seed, epoch)``, so
epoch ``k + 1`` of a run resumed after epoch ``k`` sees exactly the batches it would have
seen without the interruption, on any backend. The batches carry the images as uint8 (a
quarter of the bytes of float32 to move to an accelerator) and one affine map per image
(and, where the config asks for them, the boxes to erase and each image's mix); the warp,
the erasing and the mixing run inside the training model (:mod:`fer_sweep.model`). The
targets are class indices, or one-hot rows where the labels are mixed or smoothed
(:func:`soft_targets`).

On the TensorFlow backend :func:`training_input` wraps the same batches in a ``tf.data``
generator with prefetching, so the next batch is assembled while the current one trains;
other backends get a :class:`keras.utils.PyDataset`.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from fer_sweep.config import TrainConfig
from fer_sweep.fer2013 import NUM_CLASSES
from fer_sweep.model import (
    AFFINE_SIZE,
    draw_affine,
    draw_erasing,
    draw_mixing,
    erases,
    input_shapes,
    mixed_labels,
    mixes,
)

# Independent NumPy streams per (seed, epoch): the order, the warps, then (beyond the
# thesis) the erasing and the mixing; 2 is the dropout generators' (the callbacks).
_SHUFFLE, _AUGMENT, _ERASE, _MIX = 0, 1, 3, 4


def soft_targets(config: TrainConfig) -> bool:
    """Whether ``config`` trains on one-hot rows (mixed or smoothed labels), not indices."""
    return mixes(config) or config.label_smoothing > 0


def targets(labels: np.ndarray, config: TrainConfig) -> np.ndarray:
    """What the loss compares with, unmixed: class indices, or their one-hot rows."""
    if soft_targets(config):
        return np.eye(NUM_CLASSES, dtype="float32")[labels]
    return labels.astype("int32")


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of one epoch (0-based) of a run seeded ``seed``."""
    return np.random.default_rng([seed, epoch, stream])


class EpochBatches:
    """Training batches of a run: ``batch(i)`` is the i-th batch counted from ``start_epoch``.

    An epoch is ``steps_per_epoch`` batches of ``batch_size`` images (the last one smaller),
    in the epoch's own shuffled order.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, config: TrainConfig, *, start_epoch: int
    ):
        self.images = images[..., None] if images.ndim == 3 else images
        self.labels = labels.astype("int32")
        self.config = config
        self.start_epoch = start_epoch
        self.steps_per_epoch = math.ceil(len(labels) / config.batch_size)
        self._epoch = -1
        self._order = self._affine = self._erase = None
        self._mix: list = []

    def _prepare(self, epoch: int) -> None:
        n, size, seed = len(self.labels), self.images.shape[1], self.config.seed
        self._order = epoch_rng(seed, epoch, _SHUFFLE).permutation(n)
        self._affine = draw_affine(epoch_rng(seed, epoch, _AUGMENT), n, size, self.config)
        if erases(self.config):
            self._erase = draw_erasing(epoch_rng(seed, epoch, _ERASE), n, size, self.config)
        if mixes(self.config):
            rng, b = epoch_rng(seed, epoch, _MIX), self.config.batch_size
            self._mix = [
                draw_mixing(rng, min(b, n - step * b), size, self.config)
                for step in range(self.steps_per_epoch)
            ]
        self._epoch = epoch

    def batch(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        epoch, step = divmod(int(i), self.steps_per_epoch)
        epoch += self.start_epoch
        if epoch != self._epoch:
            self._prepare(epoch)
        b = self.config.batch_size
        rows = self._order[step * b : (step + 1) * b]
        # The k-th image of the epoch's order gets the k-th draw: positions, not image ids.
        window = slice(step * b, (step + 1) * b)
        inputs = {"image": self.images[rows], "affine": self._affine[window]}
        labels = self.labels[rows]
        if self._erase is not None:
            inputs["erase"] = self._erase[window]
        if self._mix:
            partner, mix, keep = self._mix[step]
            inputs["partner"], inputs["mix"] = partner.astype("int32"), mix
            return inputs, mixed_labels(labels, partner, keep)
        return inputs, targets(labels, self.config)


class _Batches(keras.utils.PyDataset):
    """An endless PyDataset over :class:`EpochBatches` (fit's ``steps_per_epoch`` cuts it)."""

    def __init__(self, source: EpochBatches) -> None:
        super().__init__()
        self.source = source

    @property
    def num_batches(self):
        return None  # endless: the batch index keeps counting across epochs

    def __getitem__(self, i):
        return self.source.batch(i)


def training_input(source: EpochBatches):
    """What ``model.fit`` gets: a prefetching tf.data generator on TensorFlow, else a PyDataset.

    Keras's own PyDataset-to-tf.data conversion guesses the batch shape from the first
    batches and would refuse an epoch's smaller last batch; this one declares it.
    """
    if keras.backend.backend() != "tensorflow":
        return _Batches(source)
    import itertools

    import tensorflow as tf

    config = source.config
    signature = (
        {
            name: tf.TensorSpec((None, *shape), dtype)
            for name, (shape, dtype) in input_shapes(config).items()
        },
        tf.TensorSpec((None, NUM_CLASSES), tf.float32)
        if soft_targets(config)
        else tf.TensorSpec((None,), tf.int32),
    )
    gen = (source.batch(i) for i in itertools.count())
    return tf.data.Dataset.from_generator(lambda: gen, output_signature=signature).prefetch(2)


def eval_inputs(images: np.ndarray, config: TrainConfig | None = None) -> dict[str, np.ndarray]:
    """Evaluation inputs for ``config``'s training model: the images, and zeros for its
    training-only inputs (the maps, boxes and mixes it ignores outside training)."""
    x = images[..., None] if images.ndim == 3 else images
    shapes = input_shapes(config) if config is not None else {}
    out = {"image": x, "affine": np.zeros((len(x), AFFINE_SIZE), "float32")}
    for name, (shape, dtype) in shapes.items():
        if name not in out:
            out[name] = np.zeros((len(x), *shape), dtype)
    return out
