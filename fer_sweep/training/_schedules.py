"""Learning-rate schedules of the thesis, as Keras schedules driven by optimizer iterations.

Because every schedule is a function of ``optimizer.iterations``, a run resumed from a
checkpoint (which restores the optimizer) continues its schedule exactly where it stopped.
"""

from __future__ import annotations

import keras

from fer_sweep.config import TrainConfig, spread
from fer_sweep.errors import UserError


def step_iteration_boundaries(config: TrainConfig, steps_per_epoch: int) -> list[int]:
    """Iteration indices after which a step schedule drops the rate.

    ``PiecewiseConstantDecay`` keeps value ``i`` while ``step <= boundary[i]``; the last
    update of epoch ``e`` is iteration ``e * steps_per_epoch - 1``, so the drop "after epoch
    e" sits exactly there. A run too short to give every step a whole epoch (a 1- or 2-epoch
    smoke run of a two-drop schedule) drops at the same fractions of its updates instead,
    so that no step is skipped.
    """
    epochs = config.step_epochs()
    if epochs is not None:
        return [e * steps_per_epoch - 1 for e in epochs]
    total = config.epochs * steps_per_epoch
    try:
        firsts = spread([f * total for f in config.step_boundaries], total)
    except ValueError:
        raise UserError(
            f"a step schedule with {len(config.step_boundaries)} drop(s) needs more than "
            f"{total} update(s): use more epochs, more images or a smaller batch"
        ) from None
    return [u - 1 for u in firsts]  # u is the first update at the lower rate


def make_learning_rate(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's ``learning_rate`` for ``config.schedule``.

    - ``constant`` and ``reduce_on_plateau``: a float (the plateau callback changes it).
    - ``time_decay``: ``lr0 / (1 + decay * t)``, ``t`` counting updates (Keras 2's ``decay``
      semantics, the default) or completed epochs (``decay_unit: epoch``).
    - ``step``: ``lr0 * factor**k`` after the k-th boundary (epochs, or fractions of the run).
    - ``cosine``: from ``lr0`` to ``min_lr`` over the whole run; with ``warmup_epochs``, up
      from 0 to ``lr0`` linearly over those first, then the cosine over the rest.
    """
    lr = config.lr
    if config.schedule in ("constant", "reduce_on_plateau"):
        return lr
    if config.schedule == "time_decay":
        # Per epoch: t = completed epochs, i.e. whole multiples of the epoch's updates.
        per_epoch = config.decay_unit == "epoch"
        return keras.optimizers.schedules.InverseTimeDecay(
            initial_learning_rate=lr,
            decay_steps=steps_per_epoch if per_epoch else 1,
            decay_rate=config.decay,
            staircase=per_epoch,
        )
    if config.schedule == "step":
        bounds = step_iteration_boundaries(config, steps_per_epoch)
        values = [lr * config.step_factor**k for k in range(len(bounds) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)
    if config.schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch)
        if not config.warmup_epochs:
            return keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=lr, decay_steps=total, alpha=min(1.0, config.min_lr / lr)
            )
        # Keras's warmup: linear from initial_learning_rate (0) to warmup_target (lr) over
        # warmup_steps, then the cosine from lr down to alpha * lr over decay_steps.
        warmup = config.warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total - warmup),
            alpha=min(1.0, config.min_lr / lr),
            warmup_target=lr,
            warmup_steps=warmup,
        )
    raise AssertionError(f"unhandled schedule {config.schedule}")


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The config's optimizer. Decoupled weight decay is Keras's own (``theta -= lr * wd *
    theta`` after each step, on every variable; it is saved with the optimizer, so a resumed
    run keeps it); L2 weight decay is a loss term the network's layers carry
    (:class:`fer_sweep.model._architectures.Regularizers`)."""
    lr = make_learning_rate(config, steps_per_epoch)
    decay = config.weight_decay if config.weight_decay_mode == "decoupled" else 0.0
    decay_kw = {"weight_decay": decay} if decay else {}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            learning_rate=lr, momentum=config.momentum, nesterov=config.nesterov, **decay_kw
        )
    return keras.optimizers.Adam(
        learning_rate=lr,
        beta_1=config.beta1,
        beta_2=config.beta2,
        epsilon=config.epsilon,
        **decay_kw,
    )


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate the next update will use, whatever kind of schedule drives it."""
    lr = optimizer.learning_rate  # Keras 3 evaluates a schedule at optimizer.iterations here
    return float(keras.ops.convert_to_numpy(lr))
