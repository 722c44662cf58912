"""The dry run of a sweep (``fer_sweep sweep NAME --plan``): every trial it fixes in advance,
as the complete config it will train, without training anything or writing a study.

A grid sweep fixes every trial (its grid points); another sampler fixes its enqueued
``trials`` and samples the rest, so the plan shows the space those are drawn from.

The rendering is a YAML stream: one document per trial, each a complete config that
``fer_sweep train --config`` accepts, headed by a comment with the trial's label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fer_sweep.config import TrainConfig, make_config
from fer_sweep.search._space import (
    Budget,
    SweepSpec,
    arms,
    expand,
    trial_config_values,
    trial_label,
)

__all__ = ["Plan", "PlannedTrial", "make_plan", "render_plan"]

# The file's own length, to tell which report_epochs a shorter budget drops.
THESIS_LENGTH = Budget(subset=0, epochs=None)


@dataclass(frozen=True)
class PlannedTrial:
    """One trial the sweep fixes in advance: its parameter values, its label (the name its
    MLflow run gets) and the config it trains at the plan's budget."""

    label: str
    params: dict[str, Any]
    config: TrainConfig
    dropped_report_epochs: tuple[int, ...] = ()  # past the budget's shorter run


@dataclass(frozen=True)
class Plan:
    """What ``spec`` runs at one budget: the fixed trials, and how many trials in all."""

    spec: SweepSpec
    budget_name: str
    budget: Budget
    trials: tuple[PlannedTrial, ...]
    n_trials: int | None  # the study's target; None = until the timeout

    def base_config(self) -> TrainConfig:
        """The config a sampled trial starts from before its parameters are set."""
        return make_config(self.budget.apply(dict(self.spec.base)))


def make_plan(spec: SweepSpec, budget: str | None = None) -> Plan:
    """The plan of ``spec`` at ``budget`` (None = the file's default budget)."""
    name = budget or spec.default_budget
    chosen = spec.budget(name)
    trials = []
    for params in arms(spec):
        values = trial_config_values(spec, expand(spec, params), chosen)
        config = make_config(values, origin=f"{spec.path}: budget {name}")
        named = trial_config_values(spec, expand(spec, params), THESIS_LENGTH)
        dropped = tuple(e for e in named.get("report_epochs", ()) if e not in config.report_epochs)
        trials.append(PlannedTrial(trial_label(spec, params), dict(params), config, dropped))
    target = spec.n_trials if spec.n_trials is not None else (len(trials) or None)
    return Plan(spec, name, chosen, tuple(trials), target)


def render_plan(plan: Plan) -> str:
    """The plan as a commented YAML stream (see the module docstring)."""
    spec = plan.spec
    kind = spec.sampler["type"]
    total = "until the timeout" if plan.n_trials is None else f"{plan.n_trials} trials"
    lines = [
        f"# sweep {spec.name} ({_shown(spec.path)}) at budget {plan.budget_name} "
        f"({plan.budget.describe()}): {kind} sampler, {total}",
        "# dry run: nothing is trained and no study is written",
    ]
    if kind == "grid":
        lines.append("# a grid runs every arm once, in this order")
        if plan.n_trials is not None and plan.n_trials < len(plan.trials):
            lines.append(f"# n_trials runs the first {plan.n_trials} of these")
    if spec.report:
        lines.append("# reported beside the objective: " + ", ".join(spec.report))
    count = len(plan.trials)
    for i, trial in enumerate(plan.trials, start=1):
        lines.append(f"--- # trial {i}/{count}: {trial.label}")
        lines += [f"# {note}" for note in _notes(trial.config)]
        if trial.dropped_report_epochs:
            shown = ", ".join(map(str, trial.dropped_report_epochs))
            lines.append(f"# report_epochs {shown} dropped: past this budget's run")
        lines.append(_yaml(trial.config).rstrip("\n"))
    sampled = None if plan.n_trials is None else plan.n_trials - count
    if sampled is None or sampled > 0:
        more = "trials until the timeout" if sampled is None else f"{sampled} trial(s)"
        head = "then" if count else "every trial:"
        lines.append(f"--- # {head} {more} sampled by {kind}, starting from this config")
        lines += [f"# {note}" for note in _space_notes(spec)]
        lines.append(_yaml(plan.base_config()).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _notes(config: TrainConfig) -> list[str]:
    """What the config's numbers mean over the run, in the thesis's terms."""
    notes = []
    if config.schedule == "step":
        epochs = config.step_epochs()
        factor = f"lr x{config.step_factor:g}"
        if epochs:
            notes.append(f"{factor} after epochs {', '.join(map(str, epochs))}")
        else:
            shares = ", ".join(f"{f:.0%}" for f in config.step_boundaries)
            notes.append(f"{factor} at {shares} of the updates (fewer epochs than steps)")
    elif config.schedule == "time_decay":
        unit = "update (batch), Keras 2's decay=" if config.decay_unit == "iteration" else "epoch"
        notes.append(f"lr = {config.lr:g} / (1 + {config.decay:g} t), t counted per {unit}")
    elif config.schedule == "constant":
        notes.append(f"lr {config.lr:g} throughout (no decay)")
    if config.report_epochs:
        shown = ", ".join(map(str, config.report_epochs))
        notes.append(f"PrivateTest also reported after epochs {shown}")
    return notes


def _space_notes(spec: SweepSpec) -> list[str]:
    notes = ["the sampler sets, in this order:"]
    for name, param in spec.params.items():
        keys = sorted(param.sets())
        sets = "" if keys == [name] else f" (sets {', '.join(keys)})"
        when = " and ".join(
            f"{p} in {list(v)}" if len(v) > 1 else f"{p} = {v[0]}" for p, v in param.when.items()
        )
        where = f" when {when}" if when else ""
        log = " (log scale)" if param.log else ""
        notes.append(f"  {name}{sets}: {param.domain()}{log}{where}")
    return notes


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _yaml(config: TrainConfig) -> str:
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in config.model_dump().items()}
    return yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=100)
