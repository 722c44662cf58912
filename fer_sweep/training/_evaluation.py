"""Scoring a network on one split: accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from fer_sweep.fer2013 import INPUT_SHAPE, NUM_CLASSES


@dataclass
class SplitReport:
    """Accuracy on one split, with per-class accuracy and the confusion matrix (rows = truth)."""

    accuracy: float
    per_class: list[float | None]  # None: the split has no image of that class (n/a)
    confusion: list[list[int]]


def split_report(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> SplitReport:
    """Accuracy of the bare network ``model`` on one split (raw 0-255 images)."""
    x = images.reshape(-1, *INPUT_SHAPE).astype("float32")
    return report_of(labels, np.argmax(model.predict(x, batch_size=256, verbose=0), axis=1))


def report_of(labels: np.ndarray, pred: np.ndarray) -> SplitReport:
    """Accuracy, per-class accuracy and confusion matrix of predicted classes ``pred``."""
    confusion = np.bincount(
        labels.astype(np.int64) * NUM_CLASSES + pred, minlength=NUM_CLASSES * NUM_CLASSES
    ).reshape(NUM_CLASSES, NUM_CLASSES)
    totals = confusion.sum(axis=1)
    per_class = [
        float(hit / n) if n else None for hit, n in zip(np.diag(confusion), totals, strict=True)
    ]
    return SplitReport(
        accuracy=float(np.trace(confusion) / max(1, confusion.sum())),
        per_class=per_class,
        confusion=confusion.tolist(),
    )
