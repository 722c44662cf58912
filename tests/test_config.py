"""The training config: validation, presets, overrides, round-trip through MLflow params."""

import pytest

from fer_sweep.config import PRESETS, TrainConfig, load_config, make_config
from fer_sweep.config._train_config import parse_override
from fer_sweep.errors import UserError


def test_presets_are_the_thesis_top3():
    top1 = load_config(preset="thesis-top1")
    assert (top1.arch, top1.activation, top1.bn_position, top1.initializer) == (
        "C",
        "elu",
        "after",
        "he_normal",
    )
    assert (top1.optimizer, top1.lr, top1.batch_size, top1.epochs) == ("adam", 1e-3, 64, 80)
    assert (top1.conv_dropout, top1.fc_dropout) == (0.3, 0.3)
    assert top1.step_epochs() == [40, 60]
    top3 = load_config(preset="thesis-top3")
    assert (top3.schedule, top3.decay, top3.lr, top3.batch_size, top3.epochs) == (
        "time_decay",
        1e-3,
        0.1,
        128,
        100,
    )
    # The thesis's three, and the two recipes beyond it (tests/test_beyond.py).
    assert set(PRESETS) == {
        "thesis-top1",
        "thesis-top2",
        "thesis-top3",
        "beyond-vgg",
        "beyond-resnet18",
    }


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown config key 'dropuot'.*conv_dropout"):
        make_config({"dropuot": 0.3})


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"lr": -1}, "config key 'lr'"),
        ({"arch": "G"}, "config key 'arch'"),
        ({"conv_dropout": 1.0}, "config key 'conv_dropout'"),
        ({"optimizer": "adam", "nesterov": True}, "nesterov needs optimizer sgd"),
        ({"schedule": "step", "step_boundaries": [0.75, 0.5]}, "strictly increasing"),
        ({"schedule": "step", "step_boundaries": [0.5, 1.5]}, "fractions must lie in"),
    ],
)
def test_invalid_values_are_one_line_user_errors(values, words):
    with pytest.raises(UserError) as err:
        make_config(values)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_file_and_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("arch: E\nlr: 1e-2\n")
    cfg = load_config(path=path, preset="thesis-top2", overrides=["lr=3e-4", "hflip=no"], epochs=3)
    assert (cfg.arch, cfg.lr, cfg.hflip, cfg.epochs, cfg.fc_dropout) == ("E", 3e-4, False, 3, 0.5)


def test_bad_override_and_bad_file(tmp_path):
    with pytest.raises(UserError, match="expected key=value"):
        parse_override("lr")
    with pytest.raises(UserError, match="unknown config key 'lrr'"):
        parse_override("lrr=1")
    with pytest.raises(UserError, match="config key 'lr'"):
        load_config(overrides=["lr=abc"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("arch: [C\n")
    with pytest.raises(UserError, match="bad.yaml.*not valid YAML"):
        load_config(path=bad)
    with pytest.raises(UserError, match="no such file"):
        load_config(path=tmp_path / "missing.yaml")
    with pytest.raises(UserError, match="unknown preset"):
        load_config(preset="thesis-top9")


def test_params_round_trip():
    for cfg in (
        load_config(preset="thesis-top1", step_boundaries=(0.25, 0.5, 0.75)),
        load_config(preset="thesis-top1", report_epochs=(40, 80)),
    ):
        params = cfg.to_params()
        assert all(isinstance(v, str) for v in params.values())
        assert TrainConfig(**params) == cfg


def test_step_epochs_scale_with_a_shortened_run():
    assert load_config(preset="thesis-top1", epochs=8).step_epochs() == [4, 6]
    assert load_config(preset="thesis-top1", epochs=10).step_epochs() == [5, 8]
    # 0.5 and 0.75 of 3 epochs both round to 2: the steps are spread so none is skipped.
    assert load_config(preset="thesis-top1", epochs=3).step_epochs() == [1, 2]
    assert load_config(preset="thesis-top1", epochs=4).step_epochs() == [2, 3]
    assert load_config(preset="thesis-top1", epochs=2).step_epochs() is None  # within epochs
    fixed = load_config(schedule="step", step_unit="epoch", step_boundaries=(40, 60), epochs=80)
    assert fixed.step_epochs() == [40, 60]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"schedule": "step", "step_unit": "epoch", "step_boundaries": (40, 40)}, "strictly"),
        ({"schedule": "step", "step_unit": "epoch", "step_boundaries": (40, 80)}, "never happens"),
        ({"schedule": "step", "step_unit": "epoch", "step_boundaries": (40.5,)}, "whole epochs"),
        (
            {"schedule": "step", "step_unit": "epoch", "step_boundaries": (8, 12), "epochs": 10},
            "never happens",
        ),
        ({"report_epochs": (90,), "epochs": 80}, "past the run"),
        ({"report_epochs": (60, 40)}, "strictly increasing"),
    ],
)
def test_step_boundaries_and_report_epochs_outside_the_run_are_refused(values, words):
    with pytest.raises(UserError, match=words):
        make_config(values)
