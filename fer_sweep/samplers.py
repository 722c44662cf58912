"""Sampler and pruner options as a sweep file names them, and the Optuna objects they build.

``SAMPLER_OPTIONS`` and ``PRUNER_OPTIONS`` are what :mod:`fer_sweep.sweepfile` accepts under
``sampler:`` and ``pruner:``; :func:`make_sampler` and :func:`make_pruner` build them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from fer_sweep.space import SweepSpec, grid_space, is_int, is_number, pos_int

__all__ = ["PRUNER_OPTIONS", "SAMPLER_OPTIONS", "make_pruner", "make_sampler"]


@dataclass(frozen=True)
class Option:
    """A sampler or pruner option: what it must be (in words) and the test."""

    what: str
    ok: Callable[[Any], bool]


def _int_opt(least: int) -> Option:
    return Option(f"an integer >= {least}", lambda v: is_int(v) and v >= least)


_BOOL = Option("true or false", lambda v: isinstance(v, bool))
_SEED = _int_opt(0)

# Only options that Optuna 5 does not mark deprecated; the rest would warn on every run.
SAMPLER_OPTIONS: dict[str, dict[str, Option]] = {
    "tpe": {
        "seed": _SEED,
        "n_startup_trials": _int_opt(0),
        "n_ei_candidates": _int_opt(1),
        "multivariate": _BOOL,
        "group": _BOOL,
        "constant_liar": _BOOL,
    },
    "random": {"seed": _SEED},
    "grid": {"seed": _SEED},
    "cmaes": {
        "seed": _SEED,
        "n_startup_trials": _int_opt(0),
        "popsize": _int_opt(2),
        "use_separable_cma": _BOOL,
        "with_margin": _BOOL,
        "lr_adapt": _BOOL,
        "consider_pruned_trials": _BOOL,
        "warn_independent_sampling": _BOOL,
    },
    "qmc": {
        "seed": _SEED,
        "qmc_type": Option("sobol or halton", lambda v: v in ("sobol", "halton")),
        "scramble": _BOOL,
        "warn_independent_sampling": _BOOL,
        "warn_asynchronous_seeding": _BOOL,
    },
}
PRUNER_OPTIONS: dict[str, dict[str, Option]] = {
    "none": {},
    "median": {
        "n_startup_trials": _int_opt(0),
        "n_warmup_steps": _int_opt(0),
        "interval_steps": _int_opt(1),
        "n_min_trials": _int_opt(1),
    },
    "hyperband": {
        "min_resource": _int_opt(1),
        "max_resource": Option('"auto" or an integer >= 1', lambda v: v == "auto" or pos_int(v)),
        "reduction_factor": _int_opt(2),
        "bootstrap_count": _int_opt(0),
    },
    # Prune a trial whose PublicTest accuracy is below `lower` after n_warmup_steps epochs.
    "threshold": {
        "lower": Option("a number from 0 to 1", lambda v: is_number(v) and 0 <= v <= 1),
        "n_warmup_steps": _int_opt(0),
        "interval_steps": _int_opt(1),
    },
    "patient": {
        "patience": _int_opt(0),
        "min_delta": Option("a number >= 0", lambda v: is_number(v) and v >= 0),
        # The pruner it consults before its patience check; checked again by _parse_pruner.
        "wrapped": Option("a pruner such as {type: median}", lambda v: isinstance(v, dict | str)),
    },
}
REQUIRED_PRUNER_OPTIONS = {"patient": ("patience",), "threshold": ("lower",)}


def make_sampler(spec: SweepSpec, *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The sampler ``spec.sampler`` describes.

    ``seed`` replaces the file's seed, so a pool of workers can give each worker its own and
    they do not propose the same first points. Grid and QMC keep the file's seed whatever
    ``seed`` says: Optuna wants every worker on one shuffled grid order and one QMC sequence.
    """
    options = dict(spec.sampler)
    kind = options.pop("type")
    file_seed = options.pop("seed")
    if kind == "grid":
        return optuna.samplers.GridSampler(grid_space(spec.params), seed=file_seed)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=file_seed, **options)
    chosen_seed = file_seed if seed is None else seed
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=chosen_seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=chosen_seed, **options)
    return optuna.samplers.TPESampler(seed=chosen_seed, **options)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """The pruner ``spec.pruner`` describes (``patient`` wraps its ``wrapped`` pruner)."""
    return _build_pruner(spec.pruner)


def _build_pruner(config: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    options = dict(config)
    kind = options.pop("type")
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(**options)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(**options)
    if kind == "threshold":
        return optuna.pruners.ThresholdPruner(**options)
    wrapped = options.pop("wrapped", None)
    inner = _build_pruner(wrapped) if wrapped is not None else None
    return optuna.pruners.PatientPruner(inner, **options)
