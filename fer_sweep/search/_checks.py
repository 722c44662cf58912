"""What a sweep file must hold beyond its schema: values, conditions, overlaps, whole configs.

The schema (:mod:`._schema`) checks each key alone; these checks read the validated file as a
whole. Every value is checked against its TrainConfig field, ``when`` conditions against
the parameters before them, parameters that set one config key against each other, and
whole combinations with :func:`fer_sweep.config.make_config` -- every grid point of a grid
sweep, and for other samplers every combination of categorical choices and range ends (a
fixed-seed sample of them when there are too many), each alone and under every budget of
the file -- so that a trial cannot die hours in with an inconsistent config. Each failure is
one line naming the file and the key (:meth:`SweepSource.fail`).
"""

from __future__ import annotations

import math
import random
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from pydantic import (
    ValidationError,
)

from fer_sweep import metric_names
from fer_sweep.config import KNOWN_KEYS, TrainConfig, make_config, quote_key
from fer_sweep.errors import UserError
from fer_sweep.search._samplers import (
    make_pruner,
    make_sampler,
)
from fer_sweep.search._schema import SWEEP_NAME, Categorical, Fixed
from fer_sweep.search._space import (
    Budget,
    ParamSpec,
    SweepSpec,
    among,
    config_values_of,
    on_step,
    same_value,
)


class SweepSource:
    """The file being parsed; ``fail`` raises its one-line error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, allowed: str = "") -> NoReturn:
        tail = f"; {allowed}" if allowed else ""
        raise UserError(f"{self.path}: {where}: {problem}{tail}")


def study_name(src: SweepSource, name: str | None) -> str:
    """The study name, by default the file stem (which must then be a usable name too)."""
    if name is None and not re.fullmatch(SWEEP_NAME, src.path.stem):
        src.fail("name", f"{src.path.stem!r} is not a usable study name", "letters, digits, _ . -")
    return src.path.stem if name is None else name


def check_base(src: SweepSource, base: dict[str, Any]) -> dict[str, Any]:
    """Config keys fixed for every trial; they must form a valid config on their own."""
    for key, value in base.items():
        _check_config_key(src, f"base.{key}", key)
        _check_field(src, f"base.{key}", key, value)
    make_config(base, origin=f"{src.path}: base")
    return dict(base)


def _check_config_key(src: SweepSource, where: str, key: Any) -> None:
    if key == "subset":
        src.fail(where, "subset is set by the budget", "define a budget with its own subset")
    if key not in KNOWN_KEYS:
        known = ", ".join(k for k in KNOWN_KEYS if k != "subset")
        src.fail(where, "not a TrainConfig key", "known keys: " + known)


def _check_field(src: SweepSource, where: str, key: str, value: Any) -> None:
    """Reject a value its TrainConfig field refuses, whatever the other keys are."""
    try:
        TrainConfig(**{key: value})
    except ValidationError as err:
        for e in err.errors():
            if e["loc"][:1] == (key,):
                src.fail(where, f"{value!r} is not a valid {key}", e["msg"])


def param_spec(src: SweepSource, name: str, body: Any, earlier: dict[str, ParamSpec]) -> ParamSpec:
    where = f"space.{name}"
    when = _check_when(src, f"{where}.when", body.when or {}, earlier)
    if isinstance(body, Categorical) and isinstance(body.choices, dict):
        if body.key is not None:
            src.fail(f"{where}.key", "named arms set their own keys", "drop key")
        return _arms(src, name, body.choices, when)
    key = name if body.key is None else body.key
    _check_config_key(src, where if body.key is None else f"{where}.key", key)
    if isinstance(body, Fixed):
        _check_field(src, f"{where}.value", key, body.value)
        return ParamSpec(name, "fixed", key=key, value=body.value, when=when)
    if isinstance(body, Categorical):
        for i, choice in enumerate(body.choices):
            if any(same_value(choice, other) for other in body.choices[:i]):
                src.fail(f"{where}.choices[{i}]", f"{choice!r} is listed twice")
            _check_field(src, f"{where}.choices[{i}]", key, choice)
        return ParamSpec(name, "categorical", key=key, choices=tuple(body.choices), when=when)
    return _range(src, where, name, key, body, when)


def _arms(
    src: SweepSource, name: str, raw: dict[str, Any], when: dict[str, tuple[Any, ...]]
) -> ParamSpec:
    """Named arms: each label a mapping of config keys (an empty arm = base)."""
    arms: dict[str, dict[str, Any]] = {}
    for label, values in raw.items():
        for key, value in (values or {}).items():
            arm_where = f"space.{name}.choices.{quote_key(label)}.{key}"
            _check_config_key(src, arm_where, key)
            _check_field(src, arm_where, key, value)
        arms[label] = dict(values or {})
    return ParamSpec(name, "categorical", choices=tuple(arms), arms=arms, when=when)


def _range(src: SweepSource, where: str, name: str, key: str, body: Any, when: dict) -> ParamSpec:
    """An int or float range: low < high, log needs low > 0, step must divide the range."""
    low, high, step, log = body.low, body.high, body.step, body.log
    if low >= high:
        src.fail(
            f"{where}.low", f"low {low} is not below high {high}", "use type: fixed for one value"
        )
    if log and low <= 0:
        src.fail(f"{where}.low", f"a log range must be positive, got low {low}", "set low > 0")
    # Optuna takes a step with log only for an int step of 1.
    if step is not None and log and not (body.type == "int" and step == 1):
        src.fail(f"{where}.step", "step cannot be combined with log: true", "drop one of them")
    if step is not None and not on_step(high - low, step):
        src.fail(
            f"{where}.step",
            f"step {step} does not divide the range {low}..{high}",
            "high - low must be a whole number of steps",
        )
    for bound in ("low", "high"):
        _check_field(src, f"{where}.{bound}", key, getattr(body, bound))
    return ParamSpec(name, body.type, key=key, low=low, high=high, step=step, log=log, when=when)


def _check_when(
    src: SweepSource, where: str, raw: dict[str, Any], earlier: dict[str, ParamSpec]
) -> dict[str, tuple[Any, ...]]:
    """``{param: value}`` or ``{param: [values]}`` over earlier parameters' possible values."""
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


def check_overlaps(src: SweepSource, params: dict[str, ParamSpec]) -> None:
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


def check_sampler(src: SweepSource, sampler: dict[str, Any], params: dict[str, ParamSpec]) -> None:
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


def _check_grid(src: SweepSource, params: dict[str, ParamSpec]) -> None:
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


def check_trials(
    src: SweepSource,
    raw: list[dict[str, Any]],
    params: dict[str, ParamSpec],
    base: dict[str, Any],
    sampler: str,
    budgets: dict[str, Budget],
) -> tuple[dict[str, Any], ...]:
    """Trials to enqueue: every active sampled parameter given, each value in its domain,
    and the whole trial a valid config at every budget."""
    if raw and sampler == "grid":
        src.fail("trials", "the grid sampler already runs every point", "use tpe or random")
    trials = []
    for i, trial in enumerate(raw):
        where = f"trials[{i}]"
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


def check_n_trials(
    src: SweepSource, raw: int | None, grid: int | None, n_enqueued: int
) -> int | None:
    """At least the enqueued trials; a grid defaults to (and caps at) its size."""
    if raw is None:
        return grid
    if grid is not None and raw > grid:
        src.fail("n_trials", f"{raw} exceeds the {grid} grid points", f"at most {grid}")
    if raw < n_enqueued:
        src.fail("n_trials", f"{raw} is fewer than the {n_enqueued} enqueued trials")
    return raw


def check_combinations(
    src: SweepSource,
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
    src: SweepSource, where: str, values: dict[str, Any], budgets: dict[str, Budget], what: str
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


def check_report(
    src: SweepSource, report: list[str], base: dict[str, Any], params: dict[str, ParamSpec]
) -> None:
    """Each metric once; the one at named epochs needs epochs to report at."""
    for i, name in enumerate(report):
        if name in report[:i]:
            src.fail(f"report[{i}]", f"{name!r} is listed twice")
    if metric_names.PRIVATE_AT_EPOCH in report:
        named = [base.get("report_epochs")] + [
            arm.get("report_epochs") for p in params.values() for arm in (p.arms or {}).values()
        ]
        if not any(named) and "report_epochs" not in {p.key for p in params.values()}:
            src.fail(
                "report",
                f"{metric_names.PRIVATE_AT_EPOCH} needs epochs to report at",
                "set report_epochs in base or in the arms",
            )


def check_builds(src: SweepSource, spec: SweepSpec) -> None:
    """Build the sampler and pruner once, for the checks only Optuna makes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for where, build in (("sampler", make_sampler), ("pruner", make_pruner)):
            try:
                build(spec)
            except (ValueError, TypeError) as err:
                src.fail(where, str(err))


# Full enumeration of the probe combinations up to this many; a seeded sample beyond it.
_PROBE_LIMIT = 4096


_PROBE_SAMPLES = 1000


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
