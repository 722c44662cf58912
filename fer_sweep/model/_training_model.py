"""The thesis network behind the augmentation warp, and the way back to the bare network.

The trainer fits the training model (inputs: the uint8 image batch and its affine maps);
evaluation and the saved models use the bare network inside it.
"""

from __future__ import annotations

import keras

from fer_sweep.config import TrainConfig
from fer_sweep.fer2013 import INPUT_SHAPE
from fer_sweep.model._augment import AffineAugment, augments


def training_model(net: keras.Model, config: TrainConfig) -> keras.Model:
    """``net`` behind the augmentation warp: inputs ``image`` (uint8) and ``affine``."""
    image = keras.Input(INPUT_SHAPE, dtype="uint8", name="image")
    affine = keras.Input((6,), name="affine")
    x = AffineAugment(config.fill_mode, enabled=augments(config), name="augment")(image, affine)
    return keras.Model({"image": image, "affine": affine}, net(x), name=f"train_{net.name}")


def bare_network(model: keras.Model) -> keras.Model:
    """The thesis network inside a training model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))
