"""Learning-rate schedules: Keras-2 time decay per iteration, step boundaries, fractions."""

import math

import keras
import pytest

from fer_sweep.config import load_config
from fer_sweep.errors import UserError
from fer_sweep.training import make_optimizer
from fer_sweep.training._schedules import make_learning_rate, step_iteration_boundaries


def _lr(schedule, iteration):
    return float(keras.ops.convert_to_numpy(schedule(iteration)))


def test_time_decay_counts_iterations_not_epochs():
    cfg = load_config(
        optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, schedule="time_decay", decay=1e-3
    )
    sched = make_learning_rate(cfg, steps_per_epoch=225)
    for t in (0, 1, 10, 225, 1000, 22_500):
        assert _lr(sched, t) == pytest.approx(0.1 / (1 + 1e-3 * t), rel=1e-6)


def test_time_decay_per_epoch_counts_completed_epochs():
    cfg = load_config(
        optimizer="sgd", lr=0.1, schedule="time_decay", decay=1e-3, decay_unit="epoch"
    )
    sched = make_learning_rate(cfg, steps_per_epoch=225)
    for t, epochs_done in ((0, 0), (224, 0), (225, 1), (449, 1), (22_500, 100)):
        assert _lr(sched, t) == pytest.approx(0.1 / (1 + 1e-3 * epochs_done), rel=1e-6)


def test_a_short_run_keeps_every_step():
    # epochs=3 with drops at 0.5 / 0.75 of the run: 1e-3, 1e-4, 1e-5, one epoch each.
    cfg = load_config(preset="thesis-top1", epochs=3)
    sched = make_learning_rate(cfg, steps_per_epoch=10)
    assert [_lr(sched, e * 10) for e in range(3)] == pytest.approx([1e-3, 1e-4, 1e-5])


def test_a_run_too_short_for_whole_epoch_steps_drops_within_epochs():
    cfg = load_config(preset="thesis-top1", epochs=2)  # two drops, two epochs
    assert step_iteration_boundaries(cfg, 10) == [9, 14]  # 0.5 and 0.75 of 20 updates
    sched = make_learning_rate(cfg, steps_per_epoch=10)
    assert [_lr(sched, t) for t in (9, 10, 14, 15, 19)] == pytest.approx(
        [1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    )
    # Three updates in all: one per step.
    assert step_iteration_boundaries(load_config(preset="thesis-top1", epochs=1), 3) == [0, 1]
    with pytest.raises(UserError, match=r"needs more than 2 update\(s\)"):
        step_iteration_boundaries(load_config(preset="thesis-top1", epochs=1), 2)


def test_step_boundaries_fall_between_epochs():
    cfg = load_config(preset="thesis-top1")  # 80 epochs, drops after epochs 40 and 60
    steps = 449
    sched = make_learning_rate(cfg, steps_per_epoch=steps)
    assert step_iteration_boundaries(cfg, steps) == [40 * steps - 1, 60 * steps - 1]
    assert _lr(sched, 40 * steps - 1) == pytest.approx(1e-3)  # last update of epoch 40
    assert _lr(sched, 40 * steps) == pytest.approx(1e-4)  # first update of epoch 41
    assert _lr(sched, 60 * steps - 1) == pytest.approx(1e-4)
    assert _lr(sched, 60 * steps) == pytest.approx(1e-5)


def test_fractions_keep_the_shape_of_a_shortened_run():
    cfg = load_config(preset="thesis-top1", epochs=8)
    sched = make_learning_rate(cfg, steps_per_epoch=10)
    per_epoch = [_lr(sched, e * 10) for e in range(8)]
    assert per_epoch == pytest.approx([1e-3] * 4 + [1e-4] * 2 + [1e-5] * 2)


def test_cosine_and_constant_and_plateau():
    cos = make_learning_rate(load_config(schedule="cosine", lr=0.01, epochs=10), 5)
    assert _lr(cos, 0) == pytest.approx(0.01)
    assert _lr(cos, 25) == pytest.approx(0.005, rel=1e-3)
    assert _lr(cos, 50) == pytest.approx(0.0, abs=1e-9)
    assert make_learning_rate(load_config(schedule="constant", lr=0.02), 5) == 0.02
    assert make_learning_rate(load_config(schedule="reduce_on_plateau", lr=0.02), 5) == 0.02


def test_optimizers():
    sgd = make_optimizer(
        load_config(optimizer="sgd", momentum=0.95, nesterov=True, lr=0.1, schedule="constant"), 10
    )
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.95
    adam = make_optimizer(load_config(preset="thesis-top1"), 10)
    assert isinstance(adam, keras.optimizers.Adam)
    assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.9, 0.999, 1e-8)
    assert not math.isnan(float(keras.ops.convert_to_numpy(adam.learning_rate)))
