"""The A-F architectures of Tables 5.1-5.3 as data, and the one builder that reads them.

Every conv is 3x3 / stride 1 / "same"; every pool is 2x2 max / stride 2. A block is
``N x [CONV -> ACT -> BN]`` (or ``CONV -> BN -> ACT``) then ``POOL -> DROPOUT``; after the
blocks come ``L x [FC -> ACT -> BN -> DROPOUT]`` and ``FC-7 -> softmax``.

Beyond the thesis the same builder takes a ``width`` multiplier of the conv channels, other
hidden FC widths (``fc_units``, with or without BN: ``fc_bn``), a centre ``crop`` of the
input and ``weight_decay`` as an L2 term, so that Khaireddin & Chen's VGG (stages
64-128-256-512 of two convs, FC 4096-4096) is architecture E at width 2 with
``fc_units: [4096, 4096]``. With the defaults it builds Tables 5.1-5.3 exactly.
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


def _act_bn(x, config: TrainConfig, reg: LayerOptions, *, name: str, bn: bool = True):
    """Activation and BatchNormalization in the order the config asks for (no BN: ``bn``
    false, or ``bn_position`` none)."""
    position = config.bn_position if bn else "none"
    if position == "before":
        x = reg.batch_norm(f"{name}_bn")(x)
        return keras.layers.Activation(config.activation, name=f"{name}_act")(x)
    x = keras.layers.Activation(config.activation, name=f"{name}_act")(x)
    if position == "after":
        x = reg.batch_norm(f"{name}_bn")(x)
    return x


@dataclass(frozen=True)
class LayerOptions:
    """How a network's layers start and are penalised, shared by every builder.

    The L2 terms: the thesis's ``fc_l2`` on the FC kernels, and ``weight_decay`` (mode
    ``l2``) as ``weight_decay / 2 * ||theta||^2`` on every variable, whose gradient is
    PyTorch's ``weight_decay * theta`` (None where there is none). The kernels' initializer
    (``pytorch``: PyTorch's default for convs and linears, uniform with variance
    ``1 / (3 fan_in)``; biases start at 0 all the same) and BN's ``bn_momentum`` (Keras's
    0.99; PyTorch's 0.1 is 0.9 here). With the defaults a network is built, and saved,
    exactly as before these options existed.
    """

    conv: keras.regularizers.Regularizer | None
    fc: keras.regularizers.Regularizer | None
    bias: keras.regularizers.Regularizer | None
    bn: keras.regularizers.Regularizer | None
    initializer: str
    bn_momentum: float

    @classmethod
    def of(cls, config: TrainConfig) -> LayerOptions:
        decay = config.weight_decay / 2 if config.weight_decay_mode == "l2" else 0.0

        def l2(value: float):
            return keras.regularizers.L2(value) if value > 0 else None

        return cls(
            l2(decay),
            l2(config.fc_l2 + decay),
            l2(decay),
            l2(decay),
            config.initializer,
            config.bn_momentum,
        )

    def init(self) -> str | keras.initializers.Initializer:
        """A kernel initializer for one layer: a new one each call, since an initializer
        object draws its seed once and would give layers of one shape the same weights."""
        if self.initializer == "pytorch":
            return keras.initializers.VarianceScaling(1 / 3, mode="fan_in", distribution="uniform")
        return self.initializer

    def batch_norm(self, name: str) -> keras.layers.BatchNormalization:
        return keras.layers.BatchNormalization(
            momentum=self.bn_momentum,
            gamma_regularizer=self.bn,
            beta_regularizer=self.bn,
            name=name,
        )


def stem(config: TrainConfig):
    """The input (raw 0-255 pixels, 48 x 48) and what every network does to it first: the
    centre ``crop`` (as torchvision's CenterCrop places it) and the thesis's 1/255."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    x = inputs
    if config.crop and config.crop < INPUT_SHAPE[0]:
        margin, top = INPUT_SHAPE[0] - config.crop, crop_origin(config.crop)
        x = keras.layers.Cropping2D(((top, margin - top), (top, margin - top)), name="crop")(x)
    if config.rescale:
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    return inputs, x


def crop_origin(crop: int, size: int = INPUT_SHAPE[0]) -> int:
    """Where a centre ``crop`` of a ``size`` px image starts, from the top and from the left,
    as torchvision's CenterCrop places it (0 for no crop)."""
    return int(round((size - (crop or size)) / 2.0))


def build_model(config: TrainConfig) -> keras.Model:
    """Build the network ``config.arch`` with the config's architecture knobs.

    The model takes raw pixel values (0-255) of shape (48, 48, 1) and ends in a 7-way
    softmax; the thesis's 1/255 rescaling (``config.rescale``) and the centre ``crop`` are
    its first layers, so a saved model classifies images as the dataset stores them.
    Augmentation is not part of it: the trainer wraps it in a training model that warps the
    batch first (:mod:`._training_model`). ``resnet18`` is :mod:`._resnet`'s.
    """
    if config.arch == "resnet18":
        from fer_sweep.model._resnet import build_resnet18

        return build_resnet18(config)
    arch = ARCHITECTURES[config.arch]
    reg = LayerOptions.of(config)
    hidden = config.fc_units or arch.hidden
    # Convs and FCs keep their biases even where BN follows: Table 5.3's counts include them.
    inputs, x = stem(config)
    for b, channels in enumerate(arch.blocks, start=1):
        for c, filters in enumerate(channels, start=1):
            name = f"block{b}_conv{c}"
            x = keras.layers.Conv2D(
                max(1, round(filters * config.width)),
                3,
                padding="same",
                kernel_initializer=reg.init(),
                kernel_regularizer=reg.conv,
                bias_regularizer=reg.bias,
                name=name,
            )(x)
            x = _act_bn(x, config, reg, name=name)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
        if config.conv_dropout > 0:
            x = keras.layers.Dropout(config.conv_dropout, name=f"block{b}_dropout")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for f, units in enumerate(hidden, start=1):
        name = f"fc{f}"
        x = keras.layers.Dense(
            units,
            kernel_initializer=reg.init(),
            kernel_regularizer=reg.fc,
            bias_regularizer=reg.bias,
            name=name,
        )(x)
        x = _act_bn(x, config, reg, name=name, bn=config.fc_bn)
        if config.fc_dropout > 0:
            x = keras.layers.Dropout(config.fc_dropout, name=f"{name}_dropout")(x)
    return keras.Model(inputs, classifier(x, config, reg), name=f"vgg_type_{arch.name}")


def classifier(x, config: TrainConfig, reg: LayerOptions):
    """The last FC and its softmax, in float32 whatever the policy: it keeps the loss stable
    under mixed_bfloat16."""
    return keras.layers.Dense(
        NUM_CLASSES,
        activation="softmax",
        kernel_initializer=reg.init(),
        kernel_regularizer=reg.fc,
        bias_regularizer=reg.bias,
        dtype="float32",
        name="predictions",
    )(x)


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(keras.ops.size(w) for w in model.trainable_weights))
