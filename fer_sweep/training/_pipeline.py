"""The input pipeline: uint8 images in, training batches out, the same on every backend.

Every batch is a pure function of ``(seed, epoch, batch index)``: the shuffle order of an
epoch and its augmentation draws come from NumPy generators keyed by ``(seed, epoch)``, so
epoch ``k + 1`` of a run resumed after epoch ``k`` sees exactly the batches it would have
seen without the interruption, on any backend. The batches carry the images as uint8 (a
quarter of the bytes of float32 to move to an accelerator) and one affine map per image;
the warp itself runs inside the training model (:class:`fer_sweep.model._augment.AffineAugment`).

On the TensorFlow backend :func:`training_input` wraps the same batches in a ``tf.data``
generator with prefetching, so the next batch is assembled while the current one trains;
other backends get a :class:`keras.utils.PyDataset`.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from fer_sweep.config import TrainConfig
from fer_sweep.model import AFFINE_SIZE, draw_affine

# Independent NumPy streams per (seed, epoch): one for the order, one for the draws.
_SHUFFLE, _AUGMENT = 0, 1


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
        self._order = self._affine = None

    def _prepare(self, epoch: int) -> None:
        n, size = len(self.labels), self.images.shape[1]
        self._order = epoch_rng(self.config.seed, epoch, _SHUFFLE).permutation(n)
        self._affine = draw_affine(
            epoch_rng(self.config.seed, epoch, _AUGMENT), n, size, self.config
        )
        self._epoch = epoch

    def batch(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        epoch, step = divmod(int(i), self.steps_per_epoch)
        epoch += self.start_epoch
        if epoch != self._epoch:
            self._prepare(epoch)
        b = self.config.batch_size
        rows = self._order[step * b : (step + 1) * b]
        # The k-th image of the epoch's order gets the k-th draw: positions, not image ids.
        affine = self._affine[step * b : (step + 1) * b]
        return {"image": self.images[rows], "affine": affine}, self.labels[rows]


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

    size = source.images.shape[1:]
    signature = (
        {
            "image": tf.TensorSpec((None, *size), tf.uint8),
            "affine": tf.TensorSpec((None, AFFINE_SIZE), tf.float32),
        },
        tf.TensorSpec((None,), tf.int32),
    )
    gen = (source.batch(i) for i in itertools.count())
    return tf.data.Dataset.from_generator(lambda: gen, output_signature=signature).prefetch(2)


def eval_inputs(images: np.ndarray) -> dict[str, np.ndarray]:
    """Evaluation inputs for the training model: the images and (ignored) identity maps."""
    x = images[..., None] if images.ndim == 3 else images
    return {"image": x, "affine": np.zeros((len(x), AFFINE_SIZE), "float32")}
