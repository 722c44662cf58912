"""Beyond the thesis: each new option validated, logged, drawn the same on every backend and
after a resume, and the presets that follow the published recipes (issue 23)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest

from fer_sweep.config import TrainConfig, load_config
from fer_sweep.errors import TrainingInterrupted, UserError
from fer_sweep.model import (
    build_model,
    crop_origin,
    draw_affine,
    draw_erasing,
    draw_mixing,
    mixed_labels,
    trainable_parameters,
    training_model,
)
from fer_sweep.model._mixing import ERASE_SCALE, EraseBoxes, MixPairs
from fer_sweep.thesis import comparable
from fer_sweep.training import predictions, train
from fer_sweep.training._pipeline import EpochBatches, eval_inputs
from fer_sweep.training._schedules import make_learning_rate, make_optimizer

RESNET = dict(arch="resnet18", bn_position="before", conv_dropout=0.0, fc_dropout=0.0)
KHAIREDDIN = dict(
    arch="E", width=2.0, fc_units=(4096, 4096), fc_bn=False, crop=40, bn_position="before"
)


# --- the config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"width": 0}, "width"),
        ({"fc_units": (64, 0)}, "fc_units"),
        ({"crop": 8}, "crop 8"),
        ({"crop": 49}, "crop"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"weight_decay_mode": "adamw"}, "weight_decay_mode"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"mixup_alpha": -1}, "mixup_alpha"),
        ({"cutmix_alpha": 11}, "cutmix_alpha"),
        ({"erasing": 1.5}, "erasing"),
        ({"translate": 1.0}, "translate"),
        ({"crop_padding": 25}, "crop_padding"),
        ({"warmup_epochs": 2}, "warmup_epochs needs schedule cosine"),
        ({"schedule": "cosine", "warmup_epochs": 80}, "leaves nothing"),
        ({"plateau_monitor": "loss"}, "plateau_monitor"),
        ({"bn_momentum": 1.0}, "bn_momentum"),
        ({"initializer": "torch"}, "initializer"),
        ({"arch": "resnet18"}, "bn_position before"),
        ({**RESNET, "fc_units": (64,)}, "no hidden FCs"),
        ({"arch": "resnet50"}, "arch"),
    ],
)
def test_each_new_option_refuses_a_bad_value_in_one_line(values, says):
    with pytest.raises(UserError) as err:
        load_config(**values)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_the_new_options_round_trip_as_mlflow_params_and_leave_the_thesis_alone():
    beyond = load_config(preset="beyond-vgg", label_smoothing=0.1, cutmix_alpha=0.5)
    params = beyond.to_params()
    assert params["fc_units"] == "4096,4096" and params["weight_decay_mode"] == "l2"
    assert TrainConfig(**params) == beyond
    # Defaults change nothing: a thesis recipe is still the thesis's, at its length.
    top1 = load_config(preset="thesis-top1")
    assert TrainConfig(**top1.to_params()) == top1
    assert comparable(top1, 80)[1] == ""
    for preset in ("beyond-vgg", "beyond-resnet18"):
        config = load_config(preset=preset)
        assert config.epochs == 300 and config.crop == 40
        assert comparable(config, 300) == (None, "not one of the thesis's three recipes")


# --- the networks -------------------------------------------------------------------------


def _conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def test_khaireddins_vgg_is_one_config_with_the_papers_parameter_count():
    # 2 convs a stage (64-128-256-512), BN gamma/beta each; 40 px -> 2 x 2 x 512 -> 4096 ->
    # 4096 -> 7, no BN on the FCs: what the paper's PyTorch model counts.
    convs = _conv(3, 1, 64) + _conv(3, 64, 64) + _conv(3, 64, 128) + _conv(3, 128, 128)
    convs += _conv(3, 128, 256) + _conv(3, 256, 256) + _conv(3, 256, 512) + _conv(3, 512, 512)
    bn = 2 * 2 * (64 + 128 + 256 + 512)
    fcs = (2048 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 7 + 7)
    model = build_model(load_config(**KHAIREDDIN))
    assert trainable_parameters(model) == convs + bn + fcs == 29_890_759
    assert model.input_shape == (None, 48, 48, 1) and model.get_layer("crop").output.shape[1] == 40


def test_resnet18_has_he_et_al_s_parameter_count_for_one_channel_and_seven_classes():
    def block(cin, cout, stride):
        n = _conv(3, cin, cout, False) + _conv(3, cout, cout, False) + 4 * cout
        if stride != 1 or cin != cout:
            n += _conv(1, cin, cout, False) + 2 * cout
        return n

    stem = _conv(3, 1, 64, False) + 2 * 64
    stages = block(64, 64, 1) + block(64, 64, 1)
    for cin, cout in ((64, 128), (128, 256), (256, 512)):
        stages += block(cin, cout, 2) + block(cout, cout, 1)
    expected = stem + stages + 512 * 7 + 7
    assert trainable_parameters(build_model(load_config(**RESNET))) == expected == 11_171_271
    half = build_model(load_config(**RESNET, width=0.5, crop=40))
    assert trainable_parameters(half) < expected / 3 and half.output_shape == (None, 7)


def test_width_and_fc_units_change_only_what_they_name():
    base = build_model(load_config(arch="A"))
    wide = build_model(load_config(arch="A", width=2.0, fc_units=(32,)))
    assert [layer.filters for layer in wide.layers if hasattr(layer, "filters")] == [
        2 * layer.filters for layer in base.layers if hasattr(layer, "filters")
    ]
    assert [layer.name for layer in wide.layers if layer.name.startswith("fc")][:1] == ["fc1"]
    assert wide.get_layer("fc1").units == 32 and "fc2" not in [la.name for la in wide.layers]


def test_pytorch_initialisation_and_bn_momentum_as_the_published_code_has_them():
    model = build_model(load_config(arch="A", initializer="pytorch", bn_momentum=0.9))
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    for kernel in kernels[1:]:  # the first has one input channel: too few weights to tell
        fan_in = int(np.prod(kernel.shape[:-1]))
        std = float(np.std(keras.ops.convert_to_numpy(kernel)))
        assert std == pytest.approx((1 / (3 * fan_in)) ** 0.5, rel=0.1)
    # Each layer draws its own weights: two layers of one shape are not copies.
    deep = build_model(load_config(arch="A", initializer="pytorch", fc_units=(64, 64, 64)))
    fc2, fc3 = (keras.ops.convert_to_numpy(deep.get_layer(n).kernel) for n in ("fc2", "fc3"))
    assert fc2.shape == fc3.shape and not np.allclose(fc2, fc3)
    norms = [layer for layer in model.layers if "bn" in layer.name]
    assert norms and {layer.momentum for layer in norms} == {0.9}


@pytest.mark.parametrize("mode", ["l2", "decoupled"])
def test_weight_decay_is_an_l2_term_on_every_variable_or_keras_decoupled_decay(mode):
    config = load_config(arch="A", weight_decay=1e-3, weight_decay_mode=mode, rescale=False)
    model = build_model(config)
    optimizer = train_optimizer(config)
    if mode == "decoupled":
        assert not model.losses and optimizer.weight_decay == pytest.approx(1e-3)
        return
    model(np.zeros((1, 48, 48, 1), "float32"))
    total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses)
    expected = sum(
        1e-3 / 2 * float(np.sum(np.square(keras.ops.convert_to_numpy(v))))
        for v in model.trainable_variables
    )
    assert total == pytest.approx(expected, rel=1e-4)
    assert optimizer.weight_decay is None


def train_optimizer(config):
    return make_optimizer(config, steps_per_epoch=10)


def test_a_cosine_schedule_warms_up_linearly_then_decays_to_min_lr():
    config = load_config(schedule="cosine", warmup_epochs=2, epochs=10, lr=0.1, min_lr=0.001)
    lr = make_learning_rate(config, steps_per_epoch=5)

    def at(step):
        return float(keras.ops.convert_to_numpy(lr(step)))

    assert at(0) == pytest.approx(0.0, abs=1e-9)
    assert at(5) == pytest.approx(0.05, rel=1e-5)
    assert at(10) == pytest.approx(0.1, rel=1e-5)
    assert at(50) == pytest.approx(0.001, rel=1e-4)


# --- the draws ----------------------------------------------------------------------------


def test_shifts_leave_the_thesis_draws_and_stay_within_their_bounds():
    thesis = load_config()
    plain = draw_affine(np.random.default_rng(3), 500, 48, thesis)
    shifted = draw_affine(np.random.default_rng(3), 500, 48, thesis.replace(translate=0.1))
    # The rotation, zoom and flip of each image are the same draws as without shifts.
    np.testing.assert_array_equal(plain[:, [0, 1, 3, 4]], shifted[:, [0, 1, 3, 4]])
    moved = shifted[:, [2, 5]] - plain[:, [2, 5]]
    assert np.abs(moved).max() <= 0.1 * 48 + 1e-4 and np.abs(moved).max() > 3.0
    padded = draw_affine(np.random.default_rng(3), 500, 48, thesis.replace(crop_padding=4))
    steps = padded[:, [2, 5]] - plain[:, [2, 5]]
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
    assert set(np.round(steps).ravel().astype(int)) == set(range(-4, 5))


def test_erasing_boxes_lie_in_the_window_the_network_sees_and_follow_torchvision():
    config = load_config(erasing=0.5, crop=40)
    boxes = draw_erasing(np.random.default_rng(0), 4000, 48, config)
    erased = boxes[:, 2] > boxes[:, 0]
    assert 0.45 < erased.mean() < 0.55
    top, left, bottom, right = boxes[erased].T
    lo, hi = crop_origin(40), crop_origin(40) + 40
    assert top.min() >= lo and left.min() >= lo and bottom.max() <= hi and right.max() <= hi
    area = (bottom - top) * (right - left) / (40 * 40)
    assert ERASE_SCALE[0] * 0.5 <= area.min() and area.max() <= ERASE_SCALE[1] * 1.3
    again = draw_erasing(np.random.default_rng(0), 4000, 48, config)
    np.testing.assert_array_equal(boxes, again)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_a_mixed_batch_pairs_each_image_with_a_partner_and_its_labels_by_what_each_keeps(kind):
    config = load_config(**{f"{kind}_alpha": 1.0}, crop=40)
    partner, mix, keep = draw_mixing(np.random.default_rng(5), 32, 48, config)
    assert sorted(partner) == list(range(32))
    if kind == "mixup":
        assert np.all(mix[:, 0] == mix[:, 1]) and np.all(mix[:, 0] == keep)
    else:
        top, left, bottom, right = mix[0, 2:]
        lo, hi = crop_origin(40), crop_origin(40) + 40
        assert lo <= top <= bottom <= hi and lo <= left <= right <= hi
        assert keep[0] == pytest.approx(1 - (bottom - top) * (right - left) / 1600)
    labels = np.arange(32) % 7
    soft = mixed_labels(labels, partner, keep)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(soft[np.arange(32), labels][labels != labels[partner]], keep[0])


def test_the_layers_apply_what_they_are_given_and_only_in_training():
    x = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    box = np.array([[2, 3, 10, 20]] * 4, "float32")
    erased = keras.ops.convert_to_numpy(EraseBoxes()(x, box, training=True))
    assert np.all(erased[:, 2:10, 3:20] == 0)
    np.testing.assert_array_equal(erased[:, 10:], x[:, 10:])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(EraseBoxes()(x, box)), x)
    partner = np.array([1, 0, 3, 2], "int32")
    mix = np.array([[0.25, 0.25, 0, 0, 0, 0]] * 4, "float32")
    mixed = keras.ops.convert_to_numpy(MixPairs()(x, partner, mix, training=True))
    np.testing.assert_allclose(mixed, 0.25 * x + 0.75 * x[partner], rtol=1e-5)
    cut = np.array([[1, 0, 0, 0, 8, 8]] * 4, "float32")
    pasted = keras.ops.convert_to_numpy(MixPairs()(x, partner, cut, training=True))
    np.testing.assert_array_equal(pasted[:, :8, :8], x[partner][:, :8, :8])
    np.testing.assert_array_equal(pasted[:, 8:], x[:, 8:])


def test_a_batch_carries_what_the_training_model_takes():
    config = load_config(erasing=0.5, mixup_alpha=1.0, label_smoothing=0.1, batch_size=8)
    x = np.random.default_rng(0).integers(0, 256, (20, 48, 48), dtype=np.uint8)
    batches = EpochBatches(x, np.arange(20) % 7, config, start_epoch=0)
    inputs, targets = batches.batch(2)  # the last, smaller batch of the epoch
    assert targets.shape == (4, 7) and inputs["partner"].shape == (4,)
    model = training_model(build_model(config), config)
    assert sorted(model.input) == sorted(inputs) == sorted(eval_inputs(x[:3], config))
    assert model(inputs, training=True).shape == (4, 7)


# --- test-time crops ----------------------------------------------------------------------


@pytest.mark.parametrize("views", [5, 10])
def test_crop_views_show_the_network_torchvisions_five_and_ten_crops(views):
    x = np.random.default_rng(0).integers(0, 256, (3, 48, 48)).astype("float32")
    o, c = crop_origin(40), 40
    seen = [v[:, o : o + c, o : o + c] for v in predictions.crop_views(x, c, views)]
    corners = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]
    expected = [x[:, t : t + c, s : s + c] for t, s in corners]
    if views == 10:
        expected += [x[:, :, ::-1][:, t : t + c, s : s + c] for t, s in corners]
    assert len(seen) == views
    for got, want in zip(seen, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_ten_crop_averaging_needs_a_network_trained_on_crops():
    net = build_model(load_config(arch="A", crop=40))
    x = np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype("float32")
    probs = predictions.probabilities(net, x, tta="ten_crop", crop=40)
    views = predictions.crop_views(x, 40, 10)
    by_hand = np.mean([net.predict(v[..., None], verbose=0) for v in views], axis=0)
    np.testing.assert_allclose(probs, by_hand, rtol=1e-5)
    with pytest.raises(UserError, match="trained on crops"):
        predictions.probabilities(net, x, tta="ten_crop", crop=0)


# --- training with everything, resumed; the same draws on JAX ------------------------------

_EVERYTHING = dict(
    arch="A",
    width=0.5,
    fc_units=(32,),
    fc_bn=False,
    crop=40,
    weight_decay=1e-4,
    label_smoothing=0.1,
    mixup_alpha=1.0,
    cutmix_alpha=1.0,
    erasing=0.5,
    translate=0.1,
    crop_padding=4,
    schedule="cosine",
    warmup_epochs=1,
    epochs=3,
    checkpoint_every=1,
    subset=96,
    batch_size=32,
    seed=5,
)


class _StopAt(keras.callbacks.Callback):
    def __init__(self, event: threading.Event, epoch: int) -> None:
        super().__init__()
        self.event, self.epoch = event, epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.event.set()


@pytest.mark.slow
def test_a_run_with_every_new_option_resumes_exactly_and_reports_its_ten_crops(
    fer_dataset, tmp_path
):
    config = load_config(**_EVERYTHING)
    whole = train(config, fer_dataset, workdir=tmp_path / "whole")
    stop = threading.Event()
    with pytest.raises(TrainingInterrupted):
        train(
            config,
            fer_dataset,
            workdir=tmp_path / "cut",
            stop_event=stop,
            callbacks=[_StopAt(stop, 1)],
        )
    resumed = train(config, fer_dataset, workdir=tmp_path / "cut")
    assert resumed.resumed_from_epoch == 1
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed.history[key] == pytest.approx(whole.history[key], rel=1e-4, abs=1e-5), key
    assert whole.test_final_tencrop is not None and whole.test_best_tencrop is not None
    saved = predictions.load(tmp_path / "whole" / predictions.FILE)
    assert {"final+tencrop", "best+tencrop"} <= set(saved.variants)


_DRAWS_ON_BACKEND = """
import json, sys
import numpy as np, keras
from fer_sweep.config import load_config
from fer_sweep.model import build_model, training_model
from fer_sweep.training._pipeline import EpochBatches
config = load_config(**json.loads(sys.argv[1]))
x = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
inputs, targets = EpochBatches(x, np.arange(32) % 7, config, start_epoch=2).batch(0)
model = training_model(build_model(config), config)
layers = [model.get_layer(n) for n in ("augment", "erasing", "mixing")]
out = layers[0](inputs["image"], inputs["affine"], training=True)
out = layers[1](out, inputs["erase"], training=True)
out = layers[2](out, inputs["partner"], inputs["mix"], training=True)
print(json.dumps({"backend": keras.backend.backend(), "tf": "tensorflow" in sys.modules,
                  "targets": np.asarray(targets).tolist(),
                  "out": keras.ops.convert_to_numpy(out).tolist()}))
"""


def _draws_on(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    prelude = "from fer_sweep.backend import keep_tensorflow_out; keep_tensorflow_out()\n"
    config = {k: v for k, v in _EVERYTHING.items() if k not in ("subset",)}
    done = subprocess.run(
        [sys.executable, "-c", prelude + _DRAWS_ON_BACKEND, json.dumps(config)],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)")
def test_the_shifts_erasing_and_mixing_are_the_same_on_jax_and_tensorflow():
    jax_run, tf_run = _draws_on("jax"), _draws_on("tensorflow")
    assert (jax_run["backend"], tf_run["backend"]) == ("jax", "tensorflow")
    assert not jax_run["tf"]
    np.testing.assert_array_equal(np.array(jax_run["targets"]), np.array(tf_run["targets"]))
    np.testing.assert_allclose(np.array(jax_run["out"]), np.array(tf_run["out"]), atol=1e-3)


# --- ensembles of any mix of trials and reproduction runs --------------------------------


def _folder_member(folder, config):
    """A reproduction run's folder as `reproduce` leaves it: result.json and final.keras."""
    from fer_sweep.reporting import run_member

    folder.mkdir(parents=True)
    build_model(config).save(folder / "final.keras")
    (folder / "result.json").write_text(json.dumps({"config": config.model_dump(mode="json")}))
    return run_member(folder)


@pytest.mark.slow
def test_an_ensemble_mixes_a_logged_model_and_a_run_folder_with_ten_crops(
    fer_csv, fer_dataset, tmp_path
):
    from fer_sweep.reporting import evaluate_ensemble
    from fer_sweep.reporting._ensemble import Member
    from fer_sweep.settings import Settings
    from fer_sweep.tracking import connect, open_run

    client = connect(Settings.resolve().tracking_uri)
    plain = load_config(arch="A", subset=60, seed=1, epochs=1)
    cropped = plain.replace(crop=40)
    with open_run(client, experiment="members", run_name="a trial", tags={}) as run:
        build_model(plain).save(tmp_path / "final.keras")
        for key, value in plain.to_params().items():
            client.log_param(run.id, key, value)
        client.log_artifact(run.id, str(tmp_path / "final.keras"), "model")
    trial = Member("a logged trial", plain, run_id=run.id)
    folder = _folder_member(tmp_path / "work" / "beyond-seed0", cropped)

    result = evaluate_ensemble(client, [trial, folder], fer_dataset, tta="ten_crop")
    assert "1 of 2 over their ten crops, the others with their mirror" in result.describe()
    # By hand: the plain network with its mirror, the cropped one over its ten crops.
    from fer_sweep.data import stratified_subset

    images, labels = stratified_subset(fer_dataset, 60, seed=1).arrays("PrivateTest")
    by_hand = (
        predictions.probabilities(
            keras.models.load_model(tmp_path / "final.keras"), images, tta=True
        )
        + predictions.probabilities(
            keras.models.load_model(folder.folder / "final.keras"), images, tta="ten_crop", crop=40
        )
    ) / 2
    assert result.report.accuracy == pytest.approx(np.mean(by_hand.argmax(axis=1) == labels))
    logged = client.get_run(result.run_id)
    assert logged.data.tags["fer_sweep.ensemble_tta"] == "ten_crop"
    assert logged.info.run_name == "ensemble of 2 + ten-crop TTA"

    # Members scored on other images cannot be paired into one PrivateTest.
    everything = _folder_member(tmp_path / "work" / "all-seed0", plain.replace(subset=0))
    with pytest.raises(UserError, match="different PrivateTest images"):
        evaluate_ensemble(client, [trial, everything], fer_dataset)

    # The command line: a folder member, and a trial reference that is not one.
    run_cli = [sys.executable, "-m", "fer_sweep", "ensemble", "--data", str(fer_csv)]
    ok = subprocess.run(
        [*run_cli, "--run", str(folder.folder), "--tta", "ten-crop"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "over their ten crops" in ok.stdout and "PrivateTest" in ok.stdout
    bad = subprocess.run([*run_cli, "--trial", "no-colon"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --trial 'no-colon': expected STUDY:NUMBER (such as dropout-smoke:4)"
    ]
