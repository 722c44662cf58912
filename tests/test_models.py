"""The A-F builder against Table 5.3's exact trainable parameter counts."""

import keras
import pytest

from fer_sweep.config import load_config
from fer_sweep.model import ARCHITECTURES, build_model, trainable_parameters
from fer_sweep.thesis import PARAMETER_COUNTS


@pytest.mark.parametrize("arch", sorted(PARAMETER_COUNTS))
def test_trainable_parameters_match_the_thesis(arch):
    model = build_model(load_config(arch=arch))
    assert trainable_parameters(model) == PARAMETER_COUNTS[arch]


@pytest.mark.parametrize(
    ("arch", "layers"), [("A", 7), ("B", 7), ("C", 9), ("D", 10), ("E", 11), ("F", 12)]
)
def test_weight_layers(arch, layers):
    model = build_model(load_config(arch=arch))
    weighted = [
        lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D | keras.layers.Dense)
    ]
    assert len(weighted) == layers == ARCHITECTURES[arch].weight_layers


def _kinds(model):
    return [type(lyr).__name__ for lyr in model.layers]


def test_bn_position_orders_the_layers():
    after = _kinds(build_model(load_config(bn_position="after")))
    before = _kinds(build_model(load_config(bn_position="before")))
    none = _kinds(build_model(load_config(bn_position="none")))
    assert after[1:5] == ["Rescaling", "Conv2D", "Activation", "BatchNormalization"]
    assert before[2:5] == ["Conv2D", "BatchNormalization", "Activation"]
    assert "BatchNormalization" not in none
    # BN position does not change what is trained, only the order.
    assert trainable_parameters(build_model(load_config(bn_position="before"))) == 587_175


def test_dropout_rates_per_block_and_fc():
    model = build_model(load_config(conv_dropout=0.3, fc_dropout=0.8))
    rates = {lyr.name: lyr.rate for lyr in model.layers if isinstance(lyr, keras.layers.Dropout)}
    assert [v for k, v in rates.items() if k.startswith("block")] == [0.3, 0.3, 0.3]
    assert [v for k, v in rates.items() if k.startswith("fc")] == [0.8, 0.8]
    off = build_model(load_config(conv_dropout=0.0, fc_dropout=0.0))
    assert not any(isinstance(lyr, keras.layers.Dropout) for lyr in off.layers)


def test_the_network_rescales_raw_pixels_itself():
    model = build_model(load_config())
    assert isinstance(model.layers[1], keras.layers.Rescaling) and model.layers[1].scale == 1 / 255
    unscaled = build_model(load_config(rescale=False))
    assert not any(isinstance(lyr, keras.layers.Rescaling) for lyr in unscaled.layers)


def test_l2_only_on_fc_layers_and_initializer():
    model = build_model(load_config(fc_l2=0.01, initializer="glorot_normal", activation="relu"))
    for lyr in model.layers:
        if isinstance(lyr, keras.layers.Dense):
            assert lyr.kernel_regularizer is not None
            assert type(lyr.kernel_initializer).__name__ == "GlorotNormal"
        if isinstance(lyr, keras.layers.Conv2D):
            assert lyr.kernel_regularizer is None
    assert model.output_shape == (None, 7)
