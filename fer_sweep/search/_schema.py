"""The sweep file's schema: pydantic models of every key, and its JSON Schema for editors.

``extra="forbid"`` everywhere, unions discriminated on ``type``; the field descriptions are
what the one-line errors (:func:`fer_sweep.config.validation_message`) say is allowed.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from fer_sweep import metric_names
from fer_sweep.search._samplers import Pruner, Sampler, SweepModel, typed
from fer_sweep.search._space import BUILTIN_BUDGETS, MAX_SEEDS, is_number

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


Number = Annotated[int | float, Field(description="a number")]  # int stays int, as written


ConfigValues = Annotated[
    dict[str, Any], Field(description="a mapping of config keys, e.g. {conv_dropout: 0.3}")
]


Scalar = Annotated[
    str | int | float | bool | None,
    Field(
        description="a scalar (for a list value or several keys use named arms: "
        "label: {key: value})"
    ),
]


Arm = ConfigValues | None  # an empty arm is the base config


class _Param(SweepModel):
    noun: ClassVar[str] = "parameter"
    key: str | None = Field(None, description="a TrainConfig key (default: the parameter's name)")
    when: dict[str, Any] | None = Field(
        None, min_length=1, description="a mapping such as {optimizer: sgd} or {optimizer: [sgd]}"
    )


class Categorical(_Param):
    type: Literal["categorical"]
    choices: Annotated[
        Annotated[list[Scalar], Field(min_length=1), Tag("values")]
        | Annotated[dict[str, Arm], Field(min_length=1), Tag("arms")],
        Discriminator(lambda raw: "arms" if isinstance(raw, dict) else "values"),
        Field(description="a non-empty list of values, or named arms (label: {key: value})"),
    ]


class _Range(_Param):
    log: bool = False


class Float(_Range):
    type: Literal["float"]
    low: Number
    high: Number
    step: Annotated[int | float, Field(gt=0)] | None = Field(None, description="a positive number")


class Int(_Range):
    type: Literal["int"]
    low: int
    high: int
    step: int | None = Field(None, gt=0, description="a positive integer")


class Fixed(_Param):
    type: Literal["fixed"]
    value: Any


Param = Annotated[Categorical | Float | Int | Fixed, Field(discriminator="type")]


_SEEDS = f"an integer from 1 to {MAX_SEEDS}"  # seeds per configuration


class BudgetModel(SweepModel):
    noun: ClassVar[str] = "budget"
    subset: int = Field(0, ge=0, description="an integer >= 0 (0 means all images)")
    epochs: int | None = Field(None, ge=1, description="an integer >= 1 (null = the config's own)")
    seeds: int | None = Field(
        None, ge=1, le=MAX_SEEDS, description=_SEEDS + " (null = the file's seeds)"
    )


class Objective(SweepModel):
    """PublicTest accuracy (``val_accuracy``), at its best epoch or the last one."""

    noun: ClassVar[str] = "objective"
    metric: Literal["val_accuracy"] = "val_accuracy"
    at: Literal["best", "last"] = Field("best", description="an epoch to score")

    @field_validator("metric", mode="before")
    @classmethod
    def _public_only(cls, metric: Any) -> Any:
        if metric != "val_accuracy":
            raise ValueError(
                "cannot be optimised; only val_accuracy (PublicTest): PrivateTest is for the "
                "final report, not selection"
            )
        return metric


def _seconds(raw: Any) -> Any:
    """Seconds as a number, or a string of number+unit parts: ``90s``, ``30m``, ``1h30m``."""
    if raw is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if is_number(raw):
        seconds = float(raw)
    elif isinstance(raw, str) and re.fullmatch(_DURATION, raw.strip()):
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", raw.strip())
        seconds = sum(float(n) * units[u] for n, u in parts)
    else:
        raise ValueError("is not a duration; seconds, or e.g. 90s, 30m, 2h, 1h30m")
    if seconds <= 0:
        raise ValueError("is not positive; a duration above zero")
    return seconds


_DURATION = r"(\d+(\.\d+)?[smhd])+"


Timeout = Annotated[
    float | None,
    BeforeValidator(_seconds),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": f"^{_DURATION}$"},
            ],
            "description": "seconds, or e.g. 90s, 30m, 2h, 1h30m",
        }
    ),
]


SWEEP_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class SweepFile(SweepModel):
    """A sweep file: one Optuna study over TrainConfig values (see sweeps/README.md)."""

    noun: ClassVar[str] = "top-level"
    name: str | None = Field(
        None,
        pattern=f"^{SWEEP_NAME}$",
        description="a study name: letters, digits, _ . - (default: the file stem)",
    )
    description: str = Field("", description="text")
    base: ConfigValues = {}
    space: dict[str, Param] = Field(
        min_length=1, description="a mapping of at least one parameter, sampled in file order"
    )
    sampler: Annotated[Sampler, typed("tpe")] = Field("tpe", validate_default=True)
    pruner: Annotated[Pruner, typed("none")] = Field("none", validate_default=True)
    objective: Objective = Objective()
    n_trials: int | None = Field(None, ge=1, description="an integer >= 1, or leave it out")
    timeout: Timeout = None
    budgets: dict[str, BudgetModel] = Field(
        {}, description="a mapping of name: {subset, epochs, seeds}"
    )
    default_budget: str = Field("quick", description="a budget name")
    trials: list[dict[str, Any]] = Field(
        [], description="parameter mappings to enqueue, e.g. [{optimizer: adam}]"
    )
    report: list[Annotated[Literal[REPORT_METRICS], Field(description="a per-trial metric")]] = (
        Field([], description="per-trial metric names such as " + metric_names.TRAIN_BEST)
    )
    seeds: int = Field(1, ge=1, le=MAX_SEEDS, description=_SEEDS + " (seeds per configuration)")

    @field_validator("default_budget", mode="before")
    @classmethod
    def _a_budget(cls, name: Any, info: ValidationInfo) -> Any:
        """One of the built-in budgets or the file's own (``budgets`` is validated first)."""
        known = [
            *BUILTIN_BUDGETS,
            *(b for b in info.data.get("budgets", {}) if b not in BUILTIN_BUDGETS),
        ]
        if not (isinstance(name, str) and name in known):
            raise ValueError("is not a budget; known: " + ", ".join(known))
        return name


def schema() -> dict[str, Any]:
    """The JSON Schema of a sweep file: ``fer-sweep schema`` prints it, and
    ``sweeps/sweep.schema.json`` (``make schema``) is it, for editor completion."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **SweepFile.model_json_schema(),
    }


def schema_text() -> str:
    """:func:`schema` as ``sweeps/sweep.schema.json`` holds it."""
    return json.dumps(schema(), indent=2) + "\n"
