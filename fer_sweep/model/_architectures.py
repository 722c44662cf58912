"""The A-F architectures of Tables 5.1-5.3 as data, and the one builder that reads them.

Every conv is 3x3 / stride 1 / "same"; every pool is 2x2 max / stride 2. A block is
``N x [CONV -> ACT -> BN]`` (or ``CONV -> BN -> ACT``) then ``POOL -> DROPOUT``; after the
blocks come ``L x [FC -> ACT -> BN -> DROPOUT]`` and ``FC-7 -> softmax``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import keras

from fer_sweep.fer2013 import INPUT_SHAPE, NUM_CLASSES

if TYPE_CHECKING:
    from fer_sweep.config import TrainConfig


@dataclass(frozen=True)
class Architecture:
    name: str
    blocks: tuple[tuple[int, ...], ...]  # channels of each conv, one pool after each block
    hidden: tuple[int, ...]  # units of each hidden FC

    @property
    def weight_layers(self) -> int:
        return sum(len(b) for b in self.blocks) + len(self.hidden) + 1


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("A", ((32,), (64,), (128, 128)), (64, 64)),
        Architecture("B", ((64,), (128,), (256, 256)), (64, 64)),
        Architecture("C", ((32, 32), (64, 64), (128, 128)), (64, 64)),
        Architecture("D", ((32, 32), (64, 64), (128, 128)), (64, 64, 32)),
        Architecture("E", ((32, 32), (64, 64), (128, 128), (256, 256)), (64, 64)),
        Architecture("F", ((32, 32), (64, 64), (128, 128), (256, 256, 256)), (64, 64)),
    )
}


def _act_bn(x, *, activation: str, bn_position: str, name: str):
    """Activation and BatchNormalization in the order the config asks for."""
    if bn_position == "before":
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
        return keras.layers.Activation(activation, name=f"{name}_act")(x)
    x = keras.layers.Activation(activation, name=f"{name}_act")(x)
    if bn_position == "after":
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return x


def build_model(config: TrainConfig) -> keras.Model:
    """Build the thesis network ``config.arch`` with the config's architecture knobs.

    The model takes raw pixel values (0-255) of shape (48, 48, 1) and ends in a 7-way
    softmax; the thesis's 1/255 rescaling (``config.rescale``) is its first layer, so a saved
    model classifies images as the dataset stores them. Augmentation is not part of it: the
    trainer wraps it in a training model that warps the batch first (see train.py).
    """
    arch = ARCHITECTURES[config.arch]
    init = config.initializer
    fc_reg = keras.regularizers.L2(config.fc_l2) if config.fc_l2 > 0 else None
    # Convs and FCs keep their biases even where BN follows: Table 5.3's counts include them.
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs) if config.rescale else inputs
    for b, channels in enumerate(arch.blocks, start=1):
        for c, filters in enumerate(channels, start=1):
            name = f"block{b}_conv{c}"
            x = keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer=init, name=name)(
                x
            )
            x = _act_bn(x, activation=config.activation, bn_position=config.bn_position, name=name)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
        if config.conv_dropout > 0:
            x = keras.layers.Dropout(config.conv_dropout, name=f"block{b}_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for f, units in enumerate(arch.hidden, start=1):
        name = f"fc{f}"
        x = keras.layers.Dense(
            units, kernel_initializer=init, kernel_regularizer=fc_reg, name=name
        )(x)
        x = _act_bn(x, activation=config.activation, bn_position=config.bn_position, name=name)
        if config.fc_dropout > 0:
            x = keras.layers.Dropout(config.fc_dropout, name=f"{name}_dropout")(x)
    # float32 softmax keeps the loss stable under a mixed_bfloat16 policy.
    outputs = keras.layers.Dense(
        NUM_CLASSES,
        activation="softmax",
        kernel_initializer=init,
        kernel_regularizer=fc_reg,
        dtype="float32",
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name=f"vgg_type_{arch.name}")


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(keras.ops.size(w) for w in model.trainable_weights))
