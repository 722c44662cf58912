"""The search space: its parameter types, how a trial samples them, and budgets.

A :class:`SweepSpec` is a validated sweep file (:mod:`fer_sweep.search._sweepfile` reads and checks
the YAML); its ``params`` are :class:`ParamSpec` objects in file order. :func:`suggest` asks an
Optuna trial for each active parameter and returns the :class:`~fer_sweep.config.TrainConfig`
values they stand for; :func:`trial_config_values` adds the file's ``base`` and a
:class:`Budget`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from fer_sweep.errors import UserError

__all__ = [
    "BUILTIN_BUDGETS",
    "Budget",
    "ParamSpec",
    "SweepSpec",
    "arms",
    "distributions",
    "expand",
    "grid_points",
    "suggest",
    "trial_config_values",
    "choice_text",
    "choices_text",
    "trial_label",
]


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Budget:
    """How much of each trial to run: ``subset`` images per split (0 = all) for ``epochs``
    epochs (None = the config's own, which the sweep files set to the thesis's length), with
    ``seeds`` seeds per configuration (None = the sweep file's ``seeds``).

    Step schedules are fractions of the run by default, so they shrink with ``epochs``.
    ``report_epochs`` past a shortened run are dropped: they name epochs of the thesis's
    run (PrivateTest "at the end of the 90th epoch"), which a 10-epoch run never reaches,
    and an epoch of a shorter run is not the same point of training.
    """

    subset: int
    epochs: int | None
    seeds: int | None = None

    def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with this budget's ``subset`` (always) and ``epochs`` (unless None)."""
        out = {**values, "subset": self.subset}
        if self.epochs is not None:
            out["epochs"] = self.epochs
            if out.get("report_epochs"):
                out["report_epochs"] = [e for e in out["report_epochs"] if e <= self.epochs]
        return out

    def describe(self) -> str:
        """The budget in words: ``all images, 10 epochs``."""
        images = "all images" if self.subset == 0 else f"{self.subset} images per split"
        epochs = "the file's epochs" if self.epochs is None else f"{self.epochs} epochs"
        seeds = "" if self.seeds is None else f", {self.seeds} seed(s) per configuration"
        return f"{images}, {epochs}{seeds}"


MAX_SEEDS = 100  # seeds per configuration: far past any sweep's patience, so 1000 is a typo

BUILTIN_BUDGETS: dict[str, Budget] = {
    "smoke": Budget(subset=300, epochs=2),
    "quick": Budget(subset=0, epochs=10),
    "thesis": Budget(subset=0, epochs=None),
}


@dataclass(frozen=True)
class ParamSpec:
    """One search-space parameter: what Optuna samples and which config keys it sets.

    ``type`` is ``categorical``, ``float``, ``int`` or ``fixed``. A categorical with ``arms``
    is a set of named arms: Optuna samples a label from ``choices`` and the label's mapping
    gives the config values. Every other parameter sets the single config key ``key``.
    """

    name: str
    type: str
    key: str | None = None
    choices: tuple[Any, ...] = ()
    arms: Mapping[str, Mapping[str, Any]] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    value: Any = None
    when: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def active(self, chosen: Mapping[str, Any]) -> bool:
        """True when every ``when`` entry holds for the parameters chosen so far.

        A condition on a parameter that was itself skipped is false.
        """
        return all(
            name in chosen and among(chosen[name], allowed) for name, allowed in self.when.items()
        )

    def sets(self) -> frozenset[str]:
        """The config keys this parameter can write."""
        if self.arms is not None:
            return frozenset(k for arm in self.arms.values() for k in arm)
        return frozenset({self.key}) if self.key else frozenset()

    def can_take(self, value: Any) -> bool:
        """Whether ``value`` is in this parameter's domain (labels for named arms)."""
        if self.type == "fixed":
            return same_value(value, self.value)
        if self.type == "categorical":
            return among(value, self.choices)
        if self.type == "int":
            ok = is_int(value) and self.low <= value <= self.high
            return ok and (value - self.low) % (self.step or 1) == 0
        if not is_number(value) or not self.low <= value <= self.high:
            return False
        return self.step is None or on_step(value - self.low, self.step)

    def domain(self) -> str:
        """The domain in words, for error messages."""
        if self.type == "fixed":
            return f"only {self.value!r}"
        if self.type == "categorical":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "an integer" if self.type == "int" else "a number"
        step = f" in steps of {self.step}" if self.step is not None else ""
        return f"{kind} from {self.low} to {self.high}{step}"

    def grid_values(self) -> list[Any] | None:
        """Every value a grid visits, or None for a continuous float."""
        if self.type == "fixed":
            return [self.value]
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        n = round((self.high - self.low) / self.step)
        # Rounding keeps 0.15 from becoming 0.15000000000000002 in MLflow and on disk.
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """The distribution Optuna records for this parameter (named arms: their labels)."""
        if self.type == "categorical":
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=step
            )
        if self.type == "float":
            return optuna.distributions.FloatDistribution(
                float(self.low), float(self.high), log=self.log, step=self.step
            )
        raise ValueError(f"a fixed parameter ({self.name}) has no distribution")

    def sample(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask ``trial`` for this parameter's value (a fixed parameter never asks)."""
        if self.type == "fixed":
            return self.value
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(
            self.name, float(self.low), float(self.high), step=self.step, log=self.log
        )

    def config_values(self, value: Any) -> dict[str, Any]:
        """The config values that ``value`` of this parameter stands for."""
        if self.arms is not None:
            return copy.deepcopy(dict(self.arms[value]))
        if self.type == "float" and self.step is not None:
            # Optuna hands back 0.15000000000000002 for a 0.05 step; the config gets 0.15.
            value = round(value, 12)
        return {self.key: copy.deepcopy(value)}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file. ``sampler`` and ``pruner`` always carry ``type`` (and the
    sampler ``seed``); ``trials`` are parameter values to enqueue before sampling;
    ``report`` names per-trial metrics (:mod:`fer_sweep.metric_names`) that ``best`` shows
    beside the objective, never used to rank."""

    name: str
    description: str
    path: Path
    base: dict[str, Any]
    params: dict[str, ParamSpec]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    objective_at: str
    n_trials: int | None
    timeout: float | None
    budgets: dict[str, Budget]
    default_budget: str
    trials: tuple[dict[str, Any], ...] = ()
    report: tuple[str, ...] = ()
    seeds: int = 1  # seeds per configuration (a budget's own ``seeds`` wins)

    def seeds_at(self, budget: str | None, override: int | None = None) -> int:
        """The seeds each configuration trains at ``budget``: ``override`` (``--seeds``),
        else the budget's ``seeds``, else the file's."""
        if override is not None:
            if not (pos_int(override) and override <= MAX_SEEDS):
                raise UserError(f"--seeds {override}: expected an integer from 1 to {MAX_SEEDS}")
            return override
        own = self.budget(budget).seeds
        return self.seeds if own is None else own

    def budget(self, name: str | None) -> Budget:
        """The named budget; None means ``default_budget``."""
        key = self.default_budget if name is None else name
        if key not in self.budgets:
            raise UserError(
                f"{self.path}: budget '{key}' is not defined; known budgets: "
                + ", ".join(self.budgets)
            )
        return self.budgets[key]

    def grid_size(self) -> int | None:
        """Number of grid points when the sampler is ``grid``, else None."""
        if self.sampler["type"] != "grid":
            return None
        return grid_size_of(self.params)


# --------------------------------------------------------------------------- sampling


def suggest(spec: SweepSpec, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """Sample ``spec.params`` in order from ``trial``, skipping parameters whose ``when`` is
    false, and return the TrainConfig values they stand for (named arms expanded)."""
    chosen: dict[str, Any] = {}
    for name, param in spec.params.items():
        if param.active(chosen):
            chosen[name] = param.sample(trial)
    return config_values_of(spec.params, chosen)


def expand(spec: SweepSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig values for recorded parameter values (such as ``FrozenTrial.params``).

    Fixed parameters are filled in, inactive ones ignored; an active sampled parameter
    missing from ``params`` (a trial from an edited sweep file) is a UserError.
    """
    chosen: dict[str, Any] = {}
    for name, param in spec.params.items():
        if not param.active(chosen):
            continue
        if param.type == "fixed":
            chosen[name] = param.value
        elif name in params:
            chosen[name] = params[name]
        else:
            raise UserError(
                f"{spec.path}: space.{name}: no value recorded for this parameter; "
                "the trial was sampled from a different version of the sweep file"
            )
    return config_values_of(spec.params, chosen)


def trial_config_values(
    spec: SweepSpec, sampled: Mapping[str, Any], budget: Budget
) -> dict[str, Any]:
    """Config values for one trial: ``base``, then the sampled values, then the budget."""
    return budget.apply({**copy.deepcopy(spec.base), **sampled})


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every point of the space's grid as parameter values, in file order (the first
    parameter varies slowest). Studies queue them in this order."""
    grid = grid_space(spec.params)
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def arms(spec: SweepSpec) -> list[dict[str, Any]]:
    """The trials a sweep fixes in advance, as parameter values: every grid point of a grid
    sweep, else the enqueued ``trials`` (empty when everything is sampled)."""
    if spec.sampler["type"] == "grid":
        return grid_points(spec)
    return [dict(t) for t in spec.trials]


def choice_text(value: Any) -> str:
    """One chosen value as runs and tables show it: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def choices_text(choices: Mapping[str, Any]) -> str:
    """``dropout=0.8 FC only; lr=0.0001235``: what was chosen, in the given order."""
    return "; ".join(f"{name}={choice_text(value)}" for name, value in choices.items())


def trial_label(spec: SweepSpec, params: Mapping[str, Any]) -> str:
    """A trial in words: ``name=value`` for each sampled parameter it has, in file order,
    e.g. ``dropout=0.8 FC only`` or ``arch=A; setup=lr 0.1 no decay (Fig. 5.10)``.

    Fixed parameters are left out (every trial has them).
    """
    sampled = {n: params[n] for n, p in spec.params.items() if p.type != "fixed" and n in params}
    return choices_text(sampled)


def distributions(spec: SweepSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of every sampled (non-fixed) parameter, in file order."""
    return {n: p.distribution() for n, p in spec.params.items() if p.type != "fixed"}


def config_values_of(params: Mapping[str, ParamSpec], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The config values that the parameter values ``chosen`` stand for (arms expanded)."""
    values: dict[str, Any] = {}
    for name, value in chosen.items():
        values.update(params[name].config_values(value))
    return values


def grid_space(params: Mapping[str, ParamSpec]) -> dict[str, list[Any]]:
    """Every sampled parameter's grid values, as GridSampler takes them."""
    return {n: p.grid_values() for n, p in params.items() if p.type != "fixed"}


def grid_size_of(params: Mapping[str, ParamSpec]) -> int:
    """The number of grid points: the product of every sampled parameter's value count."""
    return math.prod(len(v) for v in grid_space(params).values())


# --------------------------------------------------------------------------- value tests
# YAML hands back bools where numbers were meant (and the reverse), so every test keeps
# ``True`` apart from ``1``.


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def pos_int(v: Any) -> bool:
    return is_int(v) and v >= 1


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def on_step(span: float, step: float) -> bool:
    """Whether ``span`` is a whole number of ``step`` (up to float rounding)."""
    k = span / step
    return abs(k - round(k)) < 1e-9 * max(1.0, abs(k))


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps ``True`` apart from ``1`` (YAML makes both easily)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def among(value: Any, allowed: tuple[Any, ...] | list[Any]) -> bool:
    return any(same_value(value, a) for a in allowed)
