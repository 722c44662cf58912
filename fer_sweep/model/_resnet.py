"""A CIFAR-style ResNet-18 for 48 px faces: beyond the thesis's plain VGG stacks.

He et al.'s ResNet-18 as CIFAR code writes it for small images: a 3x3 stem of 64 channels
and no max pool, then four stages of two basic blocks (64, 128, 256, 512 channels; the last
three start with stride 2), global average pooling and one FC. A basic block is
``CONV -> BN -> ACT -> CONV -> BN``, added to its input (through a strided 1x1 conv and BN
where the shape changes), then ``ACT``. Convs have no bias (BN follows each one). ``width``
multiplies the stages' channels; ``fc_dropout`` drops before the FC; the centre ``crop``,
the 1/255, the initializer, BN and the regularizers are the VGG builder's (:mod:`._architectures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras

from fer_sweep.model._architectures import LayerOptions, classifier, stem

if TYPE_CHECKING:
    from fer_sweep.config import TrainConfig

STAGES = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2


def _conv(x, filters: int, *, stride: int, size: int, config: TrainConfig, reg, name: str):
    return keras.layers.Conv2D(
        filters,
        size,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=reg.init(),
        kernel_regularizer=reg.conv,
        name=name,
    )(x)


def _block(x, filters: int, *, stride: int, config: TrainConfig, reg: LayerOptions, name: str):
    act = config.activation
    y = _conv(x, filters, stride=stride, size=3, config=config, reg=reg, name=f"{name}_conv1")
    y = reg.batch_norm(f"{name}_bn1")(y)
    y = keras.layers.Activation(act, name=f"{name}_act1")(y)
    y = _conv(y, filters, stride=1, size=3, config=config, reg=reg, name=f"{name}_conv2")
    y = reg.batch_norm(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = _conv(x, filters, stride=stride, size=1, config=config, reg=reg, name=f"{name}_down")
        x = reg.batch_norm(f"{name}_down_bn")(x)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.Activation(act, name=f"{name}_act2")(y)


def build_resnet18(config: TrainConfig) -> keras.Model:
    """The ResNet-18 of ``config`` (``arch: resnet18``), raw 48 x 48 pixels in, softmax out."""
    reg = LayerOptions.of(config)
    inputs, x = stem(config)
    width = [max(1, round(c * config.width)) for c in STAGES]
    x = _conv(x, width[0], stride=1, size=3, config=config, reg=reg, name="stem_conv")
    x = reg.batch_norm("stem_bn")(x)
    x = keras.layers.Activation(config.activation, name="stem_act")(x)
    for s, filters in enumerate(width, start=1):
        for b in range(1, BLOCKS_PER_STAGE + 1):
            stride = 2 if s > 1 and b == 1 else 1
            x = _block(x, filters, stride=stride, config=config, reg=reg, name=f"stage{s}_block{b}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if config.fc_dropout > 0:
        x = keras.layers.Dropout(config.fc_dropout, name="fc_dropout")(x)
    return keras.Model(inputs, classifier(x, config, reg), name="resnet18")
