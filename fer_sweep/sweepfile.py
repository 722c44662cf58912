"""Sweep files: the YAML dialect, read and validated into a :class:`~fer_sweep.space.SweepSpec`.

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

Validation goes beyond the schema: every value is checked against its TrainConfig field,
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

import math
import os
import random
import re
import warnings
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from fer_sweep import metric_names
from fer_sweep.config import KNOWN_KEYS, TrainConfig, make_config
from fer_sweep.errors import UserError
from fer_sweep.samplers import (
    PRUNER_OPTIONS,
    REQUIRED_PRUNER_OPTIONS,
    SAMPLER_OPTIONS,
    Option,
    make_pruner,
    make_sampler,
)
from fer_sweep.space import (
    BUILTIN_BUDGETS,
    MAX_SEEDS,
    Budget,
    ParamSpec,
    SweepSpec,
    among,
    config_values_of,
    grid_size_of,
    is_int,
    is_number,
    on_step,
    pos_int,
    same_value,
)

__all__ = ["list_sweeps", "load_sweep", "parse_sweep", "sweeps_dir"]


def sweeps_dir() -> Path:
    """``$FER_SWEEP_SWEEPS_DIR``, else the repository's ``sweeps/``, else ``./sweeps``."""
    env = os.environ.get("FER_SWEEP_SWEEPS_DIR", "")
    if env:
        return Path(env)
    beside_package = Path(__file__).resolve().parent.parent / "sweeps"
    return beside_package if beside_package.is_dir() else Path.cwd() / "sweeps"


def list_sweeps() -> list[str]:
    """Names (file stems) of the sweep files in :func:`sweeps_dir`, sorted."""
    folder = sweeps_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_sweep(name_or_path: str | Path) -> SweepSpec:
    """Read and validate a sweep: a name (``sweeps/NAME.yaml``) or a path to a YAML file."""
    path = _resolve(name_or_path)
    return _parse(_Src(path), _read_yaml(path))


def parse_sweep(text: str, path: str | Path) -> SweepSpec:
    """Validate a sweep file's ``text`` as if read from ``path``, which need not exist: the
    definition a study keeps in its attributes, read back (``path`` names it in errors and
    gives the default study name)."""
    path = Path(path)
    return _parse(_Src(path), _load_yaml(text, path))


# --------------------------------------------------------------------------- the schema

TOP_LEVEL_KEYS = (
    "name", "description", "base", "space", "sampler", "pruner", "objective",
    "n_trials", "timeout", "budgets", "default_budget", "trials", "report", "seeds",
)  # fmt: skip
PARAM_TYPES = ("categorical", "float", "int", "fixed")
PARAM_OPTIONS: dict[str, tuple[str, ...]] = {
    "categorical": ("type", "choices", "key", "when"),
    "float": ("type", "low", "high", "step", "log", "key", "when"),
    "int": ("type", "low", "high", "step", "log", "key", "when"),
    "fixed": ("type", "value", "key", "when"),
}
BUDGET_KEYS = ("subset", "epochs", "seeds")
# What ``report:`` may name: the numbers a finished trial records once (the per-epoch
# curves are in MLflow). ``best`` shows them beside the objective and never ranks by them.
REPORT_METRICS = (
    metric_names.TRAIN_BEST,
    metric_names.PUBLIC_FINAL,
    metric_names.PRIVATE_FINAL,
    metric_names.PRIVATE_AT_BEST,
    metric_names.PRIVATE_AT_EPOCH,
    metric_names.BEST_EPOCH,
    metric_names.EPOCHS_TRAINED,
)
OBJECTIVE_KEYS = ("metric", "at")
OBJECTIVE_AT = ("best", "last")

# Full enumeration of the probe combinations up to this many; a seeded sample beyond it.
_PROBE_LIMIT = 4096
_PROBE_SAMPLES = 1000


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
        got = {list: "a list", str: "a single string", int: "a number", float: "a number",
               bool: "a boolean"}.get(type(data), type(data).__name__)  # fmt: skip
        raise UserError(
            f"{path}: expected a mapping with keys such as base, space, sampler; got {got}"
        )
    return data


# --------------------------------------------------------------------------- parsing


class _Src:
    """The file being parsed; ``fail`` raises its one-line error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, allowed: str = "") -> NoReturn:
        tail = f"; {allowed}" if allowed else ""
        raise UserError(f"{self.path}: {where}: {problem}{tail}")


def _parse(src: _Src, data: dict[str, Any]) -> SweepSpec:
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            src.fail(str(key), "unknown top-level key", "allowed: " + ", ".join(TOP_LEVEL_KEYS))
    base = _parse_base(src, data.get("base"))
    params = _parse_space(src, data.get("space"))
    sampler = _parse_sampler(src, data.get("sampler"), params)
    budgets = _parse_budgets(src, data.get("budgets"))
    trials = _parse_trials(src, data.get("trials"), params, base, sampler["type"], budgets)
    _check_combinations(src, base, params, budgets, grid=sampler["type"] == "grid")
    report = _parse_report(src, data.get("report"), base, params)
    default_budget = data.get("default_budget", "quick")
    if not isinstance(default_budget, str) or default_budget not in budgets:
        src.fail("default_budget", f"{default_budget!r} is not a budget", _known(budgets))
    grid_size = grid_size_of(params) if sampler["type"] == "grid" else None
    spec = SweepSpec(
        name=_parse_name(src, data.get("name")),
        description=_parse_description(src, data.get("description")),
        path=src.path,
        base=base,
        params=params,
        sampler=sampler,
        pruner=_parse_pruner(src, data.get("pruner"), "pruner"),
        objective_at=_parse_objective(src, data.get("objective")),
        n_trials=_parse_n_trials(src, data.get("n_trials"), grid_size, len(trials)),
        timeout=_parse_timeout(src, data.get("timeout")),
        budgets=budgets,
        default_budget=default_budget,
        trials=trials,
        report=report,
        seeds=_parse_seeds(src, "seeds", data.get("seeds", 1)),
    )
    _check_builds(src, spec)
    return spec


def _parse_name(src: _Src, raw: Any) -> str:
    """A study name: letters, digits, ``_ . -``; defaults to the file stem."""
    name = src.path.stem if raw is None else raw
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        src.fail("name", f"{name!r} is not a usable study name", "letters, digits, _ . -")
    return name


def _parse_description(src: _Src, raw: Any) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        src.fail("description", f"expected text, got {type(raw).__name__}")
    return " ".join(raw.split())


def _parse_base(src: _Src, raw: Any) -> dict[str, Any]:
    """Config keys fixed for every trial; they must form a valid config on their own."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        src.fail("base", f"expected a mapping of config keys, got {type(raw).__name__}")
    for key, value in raw.items():
        _check_config_key(src, f"base.{key}", key)
        _check_field(src, f"base.{key}", key, value)
    make_config(raw, origin=f"{src.path}: base")
    return dict(raw)


def _check_config_key(src: _Src, where: str, key: Any) -> None:
    if key == "subset":
        src.fail(where, "subset is set by the budget", "define a budget with its own subset")
    if key not in KNOWN_KEYS:
        known = ", ".join(k for k in KNOWN_KEYS if k != "subset")
        src.fail(where, "not a TrainConfig key", "known keys: " + known)


def _check_field(src: _Src, where: str, key: str, value: Any) -> None:
    """Reject a value its TrainConfig field refuses, whatever the other keys are."""
    try:
        TrainConfig(**{key: value})
    except ValidationError as err:
        for e in err.errors():
            if e["loc"][:1] == (key,):
                src.fail(where, f"{value!r} is not a valid {key}", e["msg"])


def _parse_space(src: _Src, raw: Any) -> dict[str, ParamSpec]:
    if not isinstance(raw, dict) or not raw:
        src.fail("space", "missing or empty", "a mapping of at least one parameter")
    params: dict[str, ParamSpec] = {}
    for name, body in raw.items():
        params[str(name)] = _parse_param(src, str(name), body, params)
    _check_overlaps(src, params)
    return params


def _parse_param(src: _Src, name: str, body: Any, earlier: dict[str, ParamSpec]) -> ParamSpec:
    where = f"space.{name}"
    if not isinstance(body, dict):
        src.fail(where, "expected a mapping with a type", "types: " + ", ".join(PARAM_TYPES))
    kind = body.get("type")
    if kind not in PARAM_TYPES:
        src.fail(f"{where}.type", f"{kind!r} is not a parameter type", _known(PARAM_TYPES))
    for option in body:
        if option not in PARAM_OPTIONS[kind]:
            src.fail(
                f"{where}.{option}",
                f"unknown option for a {kind} parameter",
                "allowed: " + ", ".join(PARAM_OPTIONS[kind]),
            )
    when = _parse_when(src, f"{where}.when", body.get("when"), earlier)
    if kind == "categorical" and isinstance(body.get("choices"), dict):
        if "key" in body:
            src.fail(f"{where}.key", "named arms set their own keys", "drop key")
        return _parse_arms(src, name, body["choices"], when)
    key = body.get("key", name)
    _check_config_key(src, f"{where}.key" if "key" in body else where, key)
    if kind == "fixed":
        if "value" not in body:
            src.fail(f"{where}.value", "missing", "a fixed parameter needs a value")
        _check_field(src, f"{where}.value", key, body["value"])
        return ParamSpec(name, "fixed", key=key, value=body["value"], when=when)
    if kind == "categorical":
        choices = _parse_choices(src, where, key, body.get("choices"))
        return ParamSpec(name, "categorical", key=key, choices=choices, when=when)
    return _parse_range(src, where, name, kind, key, body, when)


def _parse_choices(src: _Src, where: str, key: str, raw: Any) -> tuple[Any, ...]:
    """Scalar choices: no duplicates, each one valid for the config key."""
    if not isinstance(raw, list) or not raw:
        src.fail(
            f"{where}.choices",
            "expected a non-empty list (or a mapping of named arms)",
            "e.g. choices: [sgd, adam]",
        )
    for i, choice in enumerate(raw):
        if not (choice is None or isinstance(choice, str | int | float | bool)):
            src.fail(
                f"{where}.choices[{i}]",
                f"{choice!r} is not a scalar",
                "for a list value or several keys use named arms (label: {key: value})",
            )
        if any(same_value(choice, other) for other in raw[:i]):
            src.fail(f"{where}.choices[{i}]", f"{choice!r} is listed twice")
        _check_field(src, f"{where}.choices[{i}]", key, choice)
    return tuple(raw)


def _parse_arms(
    src: _Src, name: str, raw: dict[Any, Any], when: dict[str, tuple[Any, ...]]
) -> ParamSpec:
    """Named arms: string labels, each a mapping of config keys (an empty arm = base)."""
    where = f"space.{name}.choices"
    arms: dict[str, dict[str, Any]] = {}
    for label, values in raw.items():
        arm_where = f"{where}.{_quote(label)}"
        if not isinstance(label, str):
            src.fail(arm_where, f"label {label!r} is not text", "quote it in the YAML")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            src.fail(arm_where, "expected a mapping of config keys", "e.g. {conv_dropout: 0.3}")
        for key, value in values.items():
            _check_config_key(src, f"{arm_where}.{key}", key)
            _check_field(src, f"{arm_where}.{key}", key, value)
        arms[label] = dict(values)
    if not arms:
        src.fail(where, "no arms", "at least one label: {key: value}")
    return ParamSpec(name, "categorical", choices=tuple(arms), arms=arms, when=when)


def _parse_range(
    src: _Src, where: str, name: str, kind: str, key: str, body: dict[str, Any], when: dict
) -> ParamSpec:
    """An int or float range: low < high, log needs low > 0, step must divide the range."""
    number = is_int if kind == "int" else is_number
    what = "an integer" if kind == "int" else "a number"
    bounds = {}
    for bound in ("low", "high"):
        if bound not in body:
            src.fail(f"{where}.{bound}", "missing", f"a {kind} range needs low and high")
        if not number(body[bound]):
            src.fail(f"{where}.{bound}", f"{body[bound]!r} is not {what}")
        bounds[bound] = body[bound]
    low, high = bounds["low"], bounds["high"]
    if low >= high:
        src.fail(
            f"{where}.low", f"low {low} is not below high {high}", "use type: fixed for one value"
        )
    log = body.get("log", False)
    if not isinstance(log, bool):
        src.fail(f"{where}.log", f"{log!r} is not true or false")
    if log and low <= 0:
        src.fail(f"{where}.low", f"a log range must be positive, got low {low}", "set low > 0")
    step = body.get("step")
    if step is not None:
        _check_step(src, where, kind, low, high, step, log)
    for bound in ("low", "high"):
        _check_field(src, f"{where}.{bound}", key, bounds[bound])
    return ParamSpec(name, kind, key=key, low=low, high=high, step=step, log=log, when=when)


def _check_step(
    src: _Src, where: str, kind: str, low: float, high: float, step: Any, log: bool
) -> None:
    """A step is positive, divides ``high - low`` exactly, and (in Optuna) excludes log."""
    number = is_int if kind == "int" else is_number
    if not number(step) or step <= 0:
        src.fail(
            f"{where}.step",
            f"{step!r} is not a positive {'integer' if kind == 'int' else 'number'}",
        )
    if log and not (kind == "int" and step == 1):
        src.fail(f"{where}.step", "step cannot be combined with log: true", "drop one of them")
    if not on_step(high - low, step):
        src.fail(
            f"{where}.step",
            f"step {step} does not divide the range {low}..{high}",
            "high - low must be a whole number of steps",
        )


def _parse_when(
    src: _Src, where: str, raw: Any, earlier: dict[str, ParamSpec]
) -> dict[str, tuple[Any, ...]]:
    """``{param: value}`` or ``{param: [values]}`` over earlier parameters' possible values."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        src.fail(where, "expected a mapping such as {optimizer: sgd}", "param: value or [values]")
    when: dict[str, tuple[Any, ...]] = {}
    for param, values in raw.items():
        if param not in earlier:
            src.fail(
                f"{where}.{param}",
                "no such parameter earlier in space",
                "a condition names a parameter defined above it: " + (", ".join(earlier) or "none"),
            )
        allowed = tuple(values) if isinstance(values, list) else (values,)
        if not allowed:
            src.fail(f"{where}.{param}", "empty list of values")
        for value in allowed:
            if not earlier[param].can_take(value):
                src.fail(
                    f"{where}.{param}",
                    f"{param} can never be {value!r}",
                    f"{param} is {earlier[param].domain()}",
                )
        when[param] = allowed
    return when


def _exclusive(a: ParamSpec, b: ParamSpec) -> bool:
    """True when the ``when`` conditions of ``a`` and ``b`` can never both hold."""
    for param in a.when.keys() & b.when.keys():
        if not any(among(v, b.when[param]) for v in a.when[param]):
            return True
    return False


def _check_overlaps(src: _Src, params: dict[str, ParamSpec]) -> None:
    """Two parameters may set the same config key only under exclusive conditions."""
    names = list(params)
    for i, later in enumerate(names):
        for first in names[:i]:
            shared = params[first].sets() & params[later].sets()
            if shared and not _exclusive(params[first], params[later]):
                src.fail(
                    f"space.{later}",
                    f"sets {', '.join(sorted(shared))}, which space.{first} also sets",
                    "give the two parameters `when` conditions that cannot both hold",
                )


def _parse_sampler(src: _Src, raw: Any, params: dict[str, ParamSpec]) -> dict[str, Any]:
    sampler = _parse_typed(src, "sampler", raw, SAMPLER_OPTIONS, default="tpe")
    sampler.setdefault("seed", 0)
    kind = sampler["type"]
    if kind == "tpe" and sampler.get("group") and sampler.get("multivariate") is False:
        src.fail("sampler.group", "group needs the multivariate TPE", "set multivariate: true")
    if kind == "grid":
        _check_grid(src, params)
    if kind == "cmaes" and not any(p.type in ("int", "float") for p in params.values()):
        src.fail(
            "sampler.type",
            "cmaes samples int and float parameters only, and this space has none",
            "use tpe, random, qmc or grid",
        )
    return sampler


def _check_grid(src: _Src, params: dict[str, ParamSpec]) -> None:
    """A grid needs finite parameters and no conditions.

    GridSampler runs the Cartesian product of all values, so a conditional parameter would
    repeat the same config once per value it never takes; named arms say the same thing
    without the repeats.
    """
    for name, param in params.items():
        if param.grid_values() is None:
            src.fail(
                f"space.{name}",
                "a grid needs finite values, and a float without step is continuous",
                "add a step, or use categorical choices",
            )
        if param.when:
            src.fail(
                f"space.{name}.when",
                "the grid sampler cannot run conditional parameters (it would repeat points)",
                "use named arms (a categorical whose choices set several keys) "
                "or a tpe/random sampler",
            )


def _parse_pruner(src: _Src, raw: Any, where: str) -> dict[str, Any]:
    pruner = _parse_typed(src, where, raw, PRUNER_OPTIONS, default="none")
    for option in REQUIRED_PRUNER_OPTIONS.get(pruner["type"], ()):
        if option not in pruner:
            src.fail(f"{where}.{option}", "missing", f"a {pruner['type']} pruner needs {option}")
    if "wrapped" in pruner:
        pruner["wrapped"] = _parse_pruner(src, pruner["wrapped"], f"{where}.wrapped")
    return pruner


def _parse_typed(
    src: _Src, where: str, raw: Any, table: dict[str, dict[str, Option]], *, default: str
) -> dict[str, Any]:
    """``{type: T, option: value, ...}`` (or just ``T``) checked against ``table[T]``."""
    what = where.split(".")[0]
    if raw is None:
        raw = {"type": default}
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        src.fail(where, f"expected a mapping with a type, got {type(raw).__name__}", _known(table))
    kind = raw.get("type", default)
    if not isinstance(kind, str) or kind not in table:
        src.fail(f"{where}.type", f"unknown {what} type {kind!r}", _known(table))
    options = table[kind]
    for option, value in raw.items():
        if option == "type":
            continue
        if option not in options:
            src.fail(f"{where}.{option}", f"unknown option for a {kind} {what}", _allowed(options))
        if not options[option].ok(value):
            src.fail(f"{where}.{option}", f"{value!r} is not {options[option].what}")
    return {**raw, "type": kind}


def _allowed(options: dict[str, Option]) -> str:
    return "allowed: " + (", ".join(options) if options else "no options")


def _parse_objective(src: _Src, raw: Any) -> str:
    """PublicTest accuracy (``val_accuracy``), at its best epoch or the last one."""
    if raw is None:
        return "best"
    if not isinstance(raw, dict):
        src.fail("objective", "expected a mapping", "{metric: val_accuracy, at: best|last}")
    for key in raw:
        if key not in OBJECTIVE_KEYS:
            src.fail(f"objective.{key}", "unknown key", "allowed: metric, at")
    metric = raw.get("metric", "val_accuracy")
    if metric != "val_accuracy":
        src.fail(
            "objective.metric",
            f"{metric!r} cannot be optimised",
            "only val_accuracy (PublicTest): PrivateTest is for the final report, not selection",
        )
    at = raw.get("at", "best")
    if at not in OBJECTIVE_AT:
        src.fail(
            "objective.at",
            f"{at!r} is not best or last",
            "best: the best epoch; last: the final one",
        )
    return at


def _parse_timeout(src: _Src, raw: Any) -> float | None:
    """Seconds as a number, or a string of number+unit parts: ``90s``, ``30m``, ``1h30m``."""
    if raw is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if is_number(raw):
        seconds = float(raw)
    elif isinstance(raw, str) and re.fullmatch(r"(\d+(\.\d+)?[smhd])+", raw.strip()):
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", raw.strip())
        seconds = sum(float(n) * units[u] for n, u in parts)
    else:
        src.fail("timeout", f"{raw!r} is not a duration", "seconds, or e.g. 90s, 30m, 2h, 1h30m")
    if seconds <= 0:
        src.fail("timeout", f"{raw!r} is not positive", "a duration above zero")
    return seconds


def _parse_budgets(src: _Src, raw: Any) -> dict[str, Budget]:
    """The built-in budgets plus the file's own (a file budget may replace a built-in)."""
    budgets = dict(BUILTIN_BUDGETS)
    if raw is None:
        return budgets
    if not isinstance(raw, dict):
        src.fail("budgets", "expected a mapping of name: {subset, epochs, seeds}")
    for name, body in raw.items():
        where = f"budgets.{name}"
        if not isinstance(body, dict):
            src.fail(where, "expected a mapping", "{subset: N, epochs: N or null, seeds: N}")
        for key in body:
            if key not in BUDGET_KEYS:
                allowed = "allowed: " + ", ".join(BUDGET_KEYS)
                src.fail(f"{where}.{key}", "unknown budget key", allowed)
        subset, epochs = body.get("subset", 0), body.get("epochs")
        if not (is_int(subset) and subset >= 0):
            src.fail(f"{where}.subset", f"{subset!r} is not an integer >= 0", "0 means all images")
        if not (epochs is None or pos_int(epochs)):
            src.fail(
                f"{where}.epochs", f"{epochs!r} is not an integer >= 1", "null = the config's own"
            )
        seeds = body.get("seeds")
        if seeds is not None:
            seeds = _parse_seeds(src, f"{where}.seeds", seeds)
        budgets[str(name)] = Budget(subset=subset, epochs=epochs, seeds=seeds)
    return budgets


def _parse_seeds(src: _Src, where: str, raw: Any) -> int:
    """Seeds per configuration: an integer from 1 to MAX_SEEDS."""
    if not (pos_int(raw) and raw <= MAX_SEEDS):
        src.fail(where, f"{raw!r} is not a number of seeds", f"an integer from 1 to {MAX_SEEDS}")
    return raw


def _parse_trials(
    src: _Src,
    raw: Any,
    params: dict[str, ParamSpec],
    base: dict[str, Any],
    sampler: str,
    budgets: dict[str, Budget],
) -> tuple[dict[str, Any], ...]:
    """Trials to enqueue: every active sampled parameter given, each value in its domain,
    and the whole trial a valid config at every budget."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        src.fail("trials", "expected a list of parameter mappings", "e.g. [{optimizer: adam}]")
    if raw and sampler == "grid":
        src.fail("trials", "the grid sampler already runs every point", "use tpe or random")
    trials = []
    for i, trial in enumerate(raw):
        where = f"trials[{i}]"
        if not isinstance(trial, dict):
            src.fail(where, "expected a mapping of parameter: value")
        sampled = [n for n, p in params.items() if p.type != "fixed"]
        for name in trial:
            if name not in sampled:
                src.fail(f"{where}.{name}", "not a sampled parameter of space", _known(sampled))
        chosen: dict[str, Any] = {}
        for name, param in params.items():
            if not param.active(chosen):
                if name in trial:
                    src.fail(f"{where}.{name}", "given, but its `when` condition is false here")
                continue
            if param.type == "fixed":
                chosen[name] = param.value
                continue
            if name not in trial:
                src.fail(f"{where}.{name}", "missing", "a trial gives every active parameter")
            if not param.can_take(trial[name]):
                src.fail(f"{where}.{name}", f"{trial[name]!r} is outside the space", param.domain())
            chosen[name] = trial[name]
        values = {**base, **config_values_of(params, chosen)}
        make_config(values, origin=f"{src.path}: {where}")
        _check_budgets(src, where, values, budgets, f"trial {trial}")
        trials.append(dict(trial))
    return tuple(trials)


def _parse_n_trials(src: _Src, raw: Any, grid: int | None, n_enqueued: int) -> int | None:
    """At least 1 and at least the enqueued trials; a grid defaults to (and caps at) its size."""
    if raw is None:
        return grid
    if not pos_int(raw):
        src.fail("n_trials", f"{raw!r} is not an integer >= 1", "or leave it out")
    if grid is not None and raw > grid:
        src.fail("n_trials", f"{raw} exceeds the {grid} grid points", f"at most {grid}")
    if raw < n_enqueued:
        src.fail("n_trials", f"{raw} is fewer than the {n_enqueued} enqueued trials")
    return raw


def _check_combinations(
    src: _Src,
    base: dict[str, Any],
    params: dict[str, ParamSpec],
    budgets: dict[str, Budget],
    *,
    grid: bool,
) -> None:
    """Every combination a trial can produce must be a valid config, at every budget (see
    module doc)."""
    for chosen in _probe_assignments(params, grid=grid):
        values = {**base, **config_values_of(params, chosen)}
        shown = ", ".join(f"{k}={v!r}" for k, v in chosen.items())
        try:
            make_config(values)
        except UserError as err:
            src.fail(
                "space",
                f"the combination {shown} fails: {err}",
                "add a `when` condition or narrow the choices so every combination is valid",
            )
        _check_budgets(src, "space", values, budgets, f"the combination {shown}")


def _check_budgets(
    src: _Src, where: str, values: dict[str, Any], budgets: dict[str, Budget], what: str
) -> None:
    """``values`` must stay a valid config under every budget: a budget that shortens the
    run must not leave a step boundary in epochs at or past its end."""
    for name, budget in budgets.items():
        try:
            make_config(budget.apply(values))
        except UserError as err:
            src.fail(
                where,
                f"at budget {name} ({budget.describe()}) {what} fails: {err}",
                "give step_boundaries as fractions of the run (step_unit: fraction), which "
                "scale with a budget's epochs",
            )


def _parse_report(
    src: _Src, raw: Any, base: dict[str, Any], params: dict[str, ParamSpec]
) -> tuple[str, ...]:
    """Per-trial metrics that ``best`` shows beside the objective; never used to rank."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        src.fail("report", "expected a list of metric names", _known(REPORT_METRICS))
    for i, name in enumerate(raw):
        if name not in REPORT_METRICS:
            src.fail(f"report[{i}]", f"{name!r} is not a per-trial metric", _known(REPORT_METRICS))
        if name in raw[:i]:
            src.fail(f"report[{i}]", f"{name!r} is listed twice")
    if metric_names.PRIVATE_AT_EPOCH in raw:
        named = [base.get("report_epochs")] + [
            arm.get("report_epochs") for p in params.values() for arm in (p.arms or {}).values()
        ]
        if not any(named) and "report_epochs" not in {p.key for p in params.values()}:
            src.fail(
                "report",
                f"{metric_names.PRIVATE_AT_EPOCH} needs epochs to report at",
                "set report_epochs in base or in the arms",
            )
    return tuple(raw)


def _check_builds(src: _Src, spec: SweepSpec) -> None:
    """Build the sampler and pruner once, for the checks only Optuna makes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for where, build in (("sampler", make_sampler), ("pruner", make_pruner)):
            try:
                build(spec)
            except (ValueError, TypeError) as err:
                src.fail(where, str(err))


# --------------------------------------------------------------------------- helpers


def _probe_assignments(params: dict[str, ParamSpec], *, grid: bool) -> Iterator[dict[str, Any]]:
    """Combinations to validate: the grid points, or choices x range ends (sampled if many)."""

    def probe(p: ParamSpec) -> list[Any]:
        if grid or p.type in ("fixed", "categorical"):
            return p.grid_values() or []
        return [p.low, p.high]

    probes = {n: probe(p) for n, p in params.items()}
    if math.prod(len(v) for v in probes.values()) <= _PROBE_LIMIT:
        yield from _walk(list(params.items()), probes, {})
        return
    rng = random.Random(0)
    for _ in range(_PROBE_SAMPLES):
        chosen: dict[str, Any] = {}
        for name, param in params.items():
            if param.active(chosen):
                chosen[name] = rng.choice(probes[name])
        yield chosen


def _walk(
    items: list[tuple[str, ParamSpec]], probes: dict[str, list[Any]], chosen: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    if not items:
        yield dict(chosen)
        return
    (name, param), rest = items[0], items[1:]
    if not param.active(chosen):
        yield from _walk(rest, probes, chosen)
        return
    for value in probes[name]:
        chosen[name] = value
        yield from _walk(rest, probes, chosen)
    del chosen[name]


def _known(names: Any) -> str:
    return "known: " + ", ".join(str(n) for n in names)


def _quote(label: Any) -> str:
    text = str(label)
    return text if re.fullmatch(r"[A-Za-z0-9_]+", text) else f'"{text}"'
