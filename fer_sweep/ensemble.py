"""Ensembles of finished models: the average of their softmax outputs, optionally with flips.

An ensemble is evaluated once, on PrivateTest, like any finished model; its members are
chosen beforehand (by PublicTest, or by recipe), never by their PrivateTest accuracy. With
test-time augmentation (``tta``) each image is also classified mirrored left-right (the
training augmentation flips faces, so the mirror is as valid a face) and the two outputs
are averaged. Works on any Keras backend: the models are the saved bare networks, which
take raw 0-255 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from fer_sweep.models import INPUT_SHAPE
from fer_sweep.train import SplitReport, report_of


def probabilities(model: keras.Model, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Softmax outputs ``(n, 7)`` of ``model`` for raw images, averaged with the mirror if
    ``tta``."""
    x = images.reshape(-1, *INPUT_SHAPE).astype("float32")
    probs = model.predict(x, batch_size=256, verbose=0)
    if tta:
        probs = (probs + model.predict(x[:, :, ::-1], batch_size=256, verbose=0)) / 2.0
    return np.asarray(probs, dtype="float64")


def ensemble_report(
    models: Sequence[keras.Model | str | Path],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    tta: bool = False,
) -> SplitReport:
    """Accuracy on one split of the mean softmax of ``models`` (models or ``.keras`` paths).

    Models given as paths are loaded one at a time, so an ensemble of many never holds more
    than one in memory.
    """
    if not models:
        raise ValueError("an ensemble needs at least one model")
    total = np.zeros((len(labels), 7))
    for member in models:
        model = member if isinstance(member, keras.Model) else keras.models.load_model(member)
        total += probabilities(model, images, tta=tta)
    return report_of(labels, np.argmax(total, axis=1))
