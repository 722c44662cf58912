"""Sampler and pruner options as a sweep file names them, and the Optuna objects they build.

:data:`Sampler` and :data:`Pruner` are the schema of a sweep file's ``sampler:`` and
``pruner:`` (one pydantic model per type, told apart by ``type``; each option typed and
bounded, and defaulting to what Optuna's constructor defaults to); :func:`make_sampler` and
:func:`make_pruner` build what a validated :class:`SweepSpec` describes.

Workers propose through :func:`worker_sampler`: a :class:`TrialSeededSampler`, made afresh
for every trial and seeded from ``(the file's seed, the trial's number)`` (:func:`trial_seed`),
so one seeded process is reproducible and no two workers repeat each other's proposals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import core_schema

from fer_sweep.search._space import SweepSpec, grid_space

__all__ = ["Pruner", "Sampler", "SweepModel", "make_pruner", "make_sampler", "options", "typed"]


class SweepModel(BaseModel):
    """A part of a sweep file: unknown keys are an error, and YAML's ``true`` is no ``1``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    noun: ClassVar[str]  # how errors name the part's keys: "option for a tpe sampler"


def _at_least(least: int, default: Any = ...) -> Any:
    """An integer option of at least ``least`` (no ``default``: required)."""
    return Field(default, ge=least, description=f"an integer >= {least}")


_SEED = Field(0, ge=0, description="an integer >= 0")


class typed:  # noqa: N801 -- used as an annotation: Annotated[Sampler, typed("tpe")]
    """``T`` or a mapping without ``type`` means ``{type: T}`` / ``{type: default, ...}``;
    the JSON schema says so too (a string naming a type, or the union's mappings)."""

    def __init__(self, default: str) -> None:
        self.default = default

    def expand(self, raw: Any) -> Any:
        if raw is None:
            return {"type": self.default}
        if isinstance(raw, str):
            return {"type": raw}
        if isinstance(raw, dict) and "type" not in raw:
            return {"type": self.default, **raw}
        return raw

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return core_schema.no_info_before_validator_function(self.expand, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        out = handler(schema)
        options = out.get("anyOf", [out])  # Pruner | None is anyOf [the union, null]
        tags = next(o["discriminator"]["mapping"] for o in options if "discriminator" in o)
        # A mapping without ``type`` is the default type's, as ``expand`` reads it: that
        # model's ``type`` is optional in the schema (the others still need theirs).
        default = handler.resolve_ref_schema({"$ref": tags[self.default]})
        default["properties"]["type"]["default"] = self.default
        required = [key for key in default.get("required", ()) if key != "type"]
        if required:
            default["required"] = required
        else:
            default.pop("required", None)
        return {"anyOf": [{"type": "string", "enum": list(tags)}, *options]}


# --------------------------------------------------------------------------- samplers
# Only options that Optuna 5 does not mark deprecated; the rest would warn on every run.


class _Sampler(SweepModel):
    noun: ClassVar[str] = "sampler"
    seed: int = _SEED


class TpeSampler(_Sampler):
    type: Literal["tpe"]
    n_startup_trials: int = _at_least(0, 10)
    n_ei_candidates: int = _at_least(1, 24)
    multivariate: bool | None = None
    group: bool = False  # needs multivariate (checked with the file)
    constant_liar: bool = True


class RandomSampler(_Sampler):
    type: Literal["random"]


class GridSampler(_Sampler):
    type: Literal["grid"]


class CmaEsSampler(_Sampler):
    type: Literal["cmaes"]
    n_startup_trials: int = _at_least(0, 1)
    popsize: int | None = _at_least(2, None)
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False
    consider_pruned_trials: bool = False
    warn_independent_sampling: bool = True


class QmcSampler(_Sampler):
    type: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = Field("sobol", description="a QMC sequence")
    scramble: bool = False
    warn_independent_sampling: bool = True
    warn_asynchronous_seeding: bool = True


Sampler = Annotated[
    TpeSampler | RandomSampler | GridSampler | CmaEsSampler | QmcSampler,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- pruners


class _Pruner(SweepModel):
    noun: ClassVar[str] = "pruner"


class NonePruner(_Pruner):
    type: Literal["none"]


class MedianPruner(_Pruner):
    type: Literal["median"]
    n_startup_trials: int = _at_least(0, 5)
    n_warmup_steps: int = _at_least(0, 0)
    interval_steps: int = _at_least(1, 1)
    n_min_trials: int = _at_least(1, 1)


class HyperbandPruner(_Pruner):
    type: Literal["hyperband"]
    min_resource: int = _at_least(1, 1)
    max_resource: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        "auto", description='"auto" or an integer >= 1'
    )
    reduction_factor: int = _at_least(2, 3)
    bootstrap_count: int = _at_least(0, 0)


class ThresholdPruner(_Pruner):
    """Prunes a trial whose PublicTest accuracy is below ``lower`` after n_warmup_steps."""

    type: Literal["threshold"]
    lower: float = Field(ge=0, le=1, description="a number from 0 to 1")
    n_warmup_steps: int = _at_least(0, 0)
    interval_steps: int = _at_least(1, 1)


class PatientPruner(_Pruner):
    type: Literal["patient"]
    patience: int = _at_least(0)
    min_delta: float = Field(0.0, ge=0, description="a number >= 0")
    # The pruner it consults before its patience check.
    wrapped: Annotated[Pruner | None, typed("none")] = Field(
        None, description="a pruner such as {type: median}"
    )


Pruner = Annotated[
    NonePruner | MedianPruner | HyperbandPruner | ThresholdPruner | PatientPruner,
    Field(discriminator="type"),
]
PatientPruner.model_rebuild()


def options(model: BaseModel) -> dict[str, Any]:
    """The options a validated sampler or pruner was given (``type`` always), nested ones
    too: what :class:`SweepSpec` keeps, so that Optuna's defaults stay Optuna's."""
    keys = sorted(model.model_fields_set, key=list(model.model_fields).index)
    given = {k: getattr(model, k) for k in sorted(keys, key=lambda k: k != "type")}
    return {k: options(v) if isinstance(v, BaseModel) else v for k, v in given.items()}


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


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` in a study whose file says ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler made afresh for every trial, seeded with :func:`trial_seed`.

    Optuna's advice for parallel workers is one seed per worker; a trial number is unique in
    its study, so seeding by it also covers resumed sweeps and workers that join later,
    and keeps one seeded process reproducible. The samplers wrapped here (TPE, random,
    CMA-ES) keep everything else in the study, so a fresh one per trial loses nothing.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._inner = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner = self._make(trial_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def worker_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The sampler a worker proposes new points with."""
    kind = spec.sampler["type"]
    if kind == "grid":
        # Every grid point is queued (create_or_resume), so the grid sampler has nothing to
        # choose; and its after_trial hook assumes the trials carry the ids it hands out
        # (KeyError 'grid_id' on a one-point grid or a retried point). A worker never samples
        # a grid trial, so any sampler that leaves queued params alone will do.
        return optuna.samplers.RandomSampler(seed=0)
    if kind == "qmc":
        return make_sampler(spec)  # Optuna keeps one sequence across workers (by trial count)
    return TrialSeededSampler(lambda seed: make_sampler(spec, seed=seed), spec.sampler["seed"])
