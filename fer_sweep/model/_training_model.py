"""The network behind the training-only augmentation, and the way back to the bare network.

The trainer fits the training model; evaluation and the saved models use the bare network
inside it. Its inputs are the uint8 image batch and its affine maps (:mod:`._augment`), and,
only where the config asks for them, the boxes to erase and each image's partner and mix
(:mod:`._mixing`): a config without them builds the model the thesis's runs saved.
"""

from __future__ import annotations

import keras

from fer_sweep.config import TrainConfig
from fer_sweep.fer2013 import INPUT_SHAPE
from fer_sweep.model._augment import AFFINE_SIZE, AffineAugment, augments
from fer_sweep.model._mixing import BOX_SIZE, MIX_SIZE, EraseBoxes, MixPairs, erases, mixes


def input_shapes(config: TrainConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """The training model's inputs for ``config``: name -> (shape of one image's, dtype)."""
    shapes = {"image": (INPUT_SHAPE, "uint8"), "affine": ((AFFINE_SIZE,), "float32")}
    if erases(config):
        shapes["erase"] = ((BOX_SIZE,), "float32")
    if mixes(config):
        shapes["partner"] = ((), "int32")
        shapes["mix"] = ((MIX_SIZE,), "float32")
    return shapes


def training_model(net: keras.Model, config: TrainConfig) -> keras.Model:
    """``net`` behind the warp, then the erasing and the mixing where ``config`` has them."""
    inputs = {
        name: keras.Input(shape, dtype=dtype, name=name)
        for name, (shape, dtype) in input_shapes(config).items()
    }
    x = AffineAugment(config.fill_mode, enabled=augments(config), name="augment")(
        inputs["image"], inputs["affine"]
    )
    if "erase" in inputs:
        x = EraseBoxes(name="erasing")(x, inputs["erase"])
    if "partner" in inputs:
        x = MixPairs(name="mixing")(x, inputs["partner"], inputs["mix"])
    return keras.Model(inputs, net(x), name=f"train_{net.name}")


def bare_network(model: keras.Model) -> keras.Model:
    """The network inside a training model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))
