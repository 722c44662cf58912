"""Sweep files: the YAML dialect, read and validated into a :class:`~fer_sweep.search.SweepSpec`.

A sweep file (``sweeps/NAME.yaml``) describes one Optuna study over :class:`TrainConfig`
values. :func:`load_sweep` checks the whole file before any training starts and turns every
mistake into a one-line :class:`UserError` of the form
``<file>: <key path>: <problem>; <what is allowed>``.

Top-level keys (only ``space`` is required)::

    name: augmentation          # study name; defaults to the file stem
    description: ...            # free text: the thesis section and its reported outcome
    base: {arch: C, lr: 0.1}    # TrainConfig keys fixed for every trial (validated alone)
    space: {...}                # the ordered search space, see below
    sampler: {type: tpe, seed: 0, multivariate: true, group: true}   # or just `sampler: tpe`
    pruner: {type: median, n_warmup_steps: 3}                         # or just `pruner: none`
    objective: {metric: val_accuracy, at: best}   # PublicTest accuracy, maximised; best|last
    n_trials: 50                # a grid defaults to its size; otherwise None = until timeout
    timeout: 2h                 # seconds, or a string such as 90s, 30m, 2h, 1h30m, 1d
    budgets: {slice: {subset: 7000, epochs: 15, seeds: 1}}   # added to smoke / quick / thesis
    default_budget: quick
    trials: [{optimizer: adam, lr: 0.001}]          # param values enqueued before sampling
    report: [train/accuracy_best]   # per-trial metrics `best` shows beside the objective
    seeds: 3                    # seeds per configuration (default 1); a budget may set its own

Parameters, sampled in file order (``key`` makes a parameter set a config key of another
name, so two parameters with exclusive ``when`` conditions can both set ``lr``)::

    optimizer: {type: categorical, choices: [sgd, adam]}
    momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: sgd}}
    sgd_lr: {type: float, low: 1.0e-3, high: 0.2, log: true, key: lr, when: {optimizer: sgd}}
    conv_dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
    batch_size: {type: int, low: 32, high: 128, step: 32}      # int also takes log: true
    arch: {type: fixed, value: C}
    dropout:                      # named arms: each label sets several config keys
      type: categorical
      choices:
        "0.25 conv / 0.5 fc": {conv_dropout: 0.25, fc_dropout: 0.5}
        "0.3 all": {conv_dropout: 0.3, fc_dropout: 0.3}

``when: {param: value}`` or ``{param: [v1, v2]}`` names an earlier parameter; with several
entries all must hold, and a parameter whose condition is false is not sampled. The values
of named arms are their labels. ``subset`` belongs to the budget and may not be set in
``base`` or ``space``; ``epochs`` may (a budget with its own epoch count overrides it).

The schema (every key, its type and bounds) is the pydantic models of :mod:`._schema`;
this module reads the YAML and checks what depends on more than one key. Validation goes
beyond the schema: every value is checked against its TrainConfig field,
and whole combinations are checked with :func:`fer_sweep.config.make_config` -- every grid
point of a grid sweep, and for other samplers every combination of categorical choices and
range ends (a fixed-seed sample of them when there are too many), each alone and under
every budget of the file (the built-in ones included) -- so that a trial cannot die hours in
with an inconsistent config such as Nesterov without momentum, and a smoke run cannot cut a
schedule given in epochs.

YAML note: sweep files read ``1e-3`` as a number (YAML 1.2), not as the string that plain
PyYAML (YAML 1.1) makes of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from fer_sweep.config import validation_message
from fer_sweep.errors import UserError
from fer_sweep.search._checks import (
    SweepSource,
    check_base,
    check_builds,
    check_combinations,
    check_n_trials,
    check_overlaps,
    check_report,
    check_sampler,
    check_trials,
    param_spec,
    study_name,
)
from fer_sweep.search._samplers import (
    options,
)
from fer_sweep.search._schema import SweepFile
from fer_sweep.search._space import (
    BUILTIN_BUDGETS,
    Budget,
    SweepSpec,
    grid_size_of,
)


def sweeps_dir() -> Path:
    """``$FER_SWEEP_SWEEPS_DIR``, else the repository's ``sweeps/``, else ``./sweeps``."""
    env = os.environ.get("FER_SWEEP_SWEEPS_DIR", "")
    if env:
        return Path(env)
    # fer_sweep/search/_sweepfile.py -> the folder holding fer_sweep/
    beside_package = Path(__file__).resolve().parents[2] / "sweeps"
    return beside_package if beside_package.is_dir() else Path.cwd() / "sweeps"


def list_sweeps() -> list[str]:
    """Names (file stems) of the sweep files in :func:`sweeps_dir`, sorted."""
    folder = sweeps_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_sweep(name_or_path: str | Path) -> SweepSpec:
    """Read and validate a sweep: a name (``sweeps/NAME.yaml``) or a path to a YAML file."""
    path = _resolve(name_or_path)
    return _parse(SweepSource(path), _read_yaml(path))


def parse_sweep(text: str, path: str | Path) -> SweepSpec:
    """Validate a sweep file's ``text`` as if read from ``path``, which need not exist: the
    definition a study keeps in its attributes, read back (``path`` names it in errors and
    gives the default study name)."""
    path = Path(path)
    return _parse(SweepSource(path), _load_yaml(text, path))


# --------------------------------------------------------------------------- reading YAML


class _SweepLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float and refuses duplicate mapping keys."""


_SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if isinstance(key, Hashable):
            seen.add(key)
    return loader.construct_mapping(node)


_SweepLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _resolve(name_or_path: str | Path) -> Path:
    """A bare name means ``sweeps_dir()/NAME.yaml``; anything path-like is a path."""
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or "/" in text or os.sep in text
    if is_path or text.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        if path.is_dir():
            raise UserError(f"{path} is a folder, not a sweep file (give a .yaml file in it)")
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        return path
    path = sweeps_dir() / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(list_sweeps()) or "none"
        raise UserError(f"{path}: no such sweep '{text}'; known sweeps: {known}")
    return path


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not valid YAML ({err})") from None
    return _load_yaml(text, path)


def _load_yaml(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_SweepLoader)  # noqa: S506
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or err
        raise UserError(f"{path}:{line} not valid YAML ({problem})") from None
    if data is None:
        raise UserError(
            f"{path} is empty (or only comments); a sweep file is a mapping with keys such as "
            "base, space, sampler"
        )
    if not isinstance(data, dict):
        got = {
            list: "a list",
            str: "a single string",
            int: "a number",
            float: "a number",
            bool: "a boolean",
        }.get(type(data), type(data).__name__)
        raise UserError(
            f"{path}: expected a mapping with keys such as base, space, sampler; got {got}"
        )
    return data


def _parse(src: SweepSource, data: dict[str, Any]) -> SweepSpec:
    try:
        file = SweepFile.model_validate(data)
    except ValidationError as err:
        raise UserError(f"{src.path}: {validation_message(err, SweepFile, data)}") from None
    base = check_base(src, file.base)
    params = {}
    for name, body in file.space.items():
        params[name] = param_spec(src, name, body, params)
    check_overlaps(src, params)
    sampler = {**options(file.sampler), "seed": file.sampler.seed}
    check_sampler(src, sampler, params)
    budgets = dict(BUILTIN_BUDGETS)  # a file budget may replace a built-in one
    budgets.update(
        {
            n: Budget(subset=b.subset, epochs=b.epochs, seeds=b.seeds)
            for n, b in file.budgets.items()
        }
    )
    trials = check_trials(src, file.trials, params, base, sampler["type"], budgets)
    check_combinations(src, base, params, budgets, grid=sampler["type"] == "grid")
    check_report(src, file.report, base, params)
    grid_size = grid_size_of(params) if sampler["type"] == "grid" else None
    spec = SweepSpec(
        name=study_name(src, file.name),
        description=" ".join(file.description.split()),
        path=src.path,
        base=base,
        params=params,
        sampler=sampler,
        pruner=options(file.pruner),
        objective_at=file.objective.at,
        n_trials=check_n_trials(src, file.n_trials, grid_size, len(trials)),
        timeout=file.timeout,
        budgets=budgets,
        default_budget=file.default_budget,
        trials=trials,
        report=tuple(file.report),
        seeds=file.seeds,
    )
    check_builds(src, spec)
    return spec
