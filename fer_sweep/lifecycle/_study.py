"""Studies: create or resume one from a sweep file, queue its points, and count its trials.

A study lives in Optuna's storage (:mod:`._storage`) and carries its own definition
(the sweep file's text, the budget and ``n_trials``) as study attributes, so a worker needs
nothing but the storage URL and the study's name.

**Configurations, not attempts.** A trial that is interrupted or whose worker dies is tried
again as a new Optuna trial (a retry) with the same parameters. The first attempt and its
retries are one *lineage*, named by the first attempt's number (the ``failed_trial`` system
attribute Optuna's own retry callback uses). ``n_trials`` counts lineages: failed and
interrupted attempts never eat the study's budget of distinct configurations. Attempts that
were never trained (``skipped``: a duplicate point, or one past ``n_trials``) count for
nothing. Each attempt records its own outcome (``outcome`` user attribute, see
:class:`fer_sweep.outcomes.Outcome`); nothing about an attempt's outcome is copied to its retry.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import metric_names as names
from fer_sweep.config import TrainConfig, make_config
from fer_sweep.errors import UserError
from fer_sweep.lifecycle._storage import open_storage
from fer_sweep.outcomes import Outcome
from fer_sweep.search import (
    SweepSpec,
    arms,
    expand,
    make_pruner,
    make_sampler,
    parse_sweep,
    trial_config_values,
)
from fer_sweep.settings import Settings

# Optuna user attributes of one attempt (never copied to a retry).
OUTCOME = "outcome"  # an Outcome value, set by the attempt itself
REASON = "reason"  # one line: the error, or why the attempt was skipped
RUN_ID = "mlflow_run_id"  # the attempt's MLflow run
STOPPED_AFTER_EPOCH = "stopped_after_epoch"  # an interrupted attempt: its checkpoint's epoch
STOPPED_IN_SEED = "stopped_in_seed"  # ...and, with several seeds, the seed it was training
# ...and the config values its parameters resolve to (a named arm's ``conv_dropout``,
# ``fc_dropout``, ...), under the config's own keys, as MLflow's params name them
# (:func:`fer_sweep.lifecycle._worker.resolved_params`, set before the attempt trains).
# ...and of a lineage (written on each retry when it is queued).
RETRY_OF = "failed_trial"  # the lineage's first attempt (Optuna's own name for it)
HISTORY = "retry_history"  # every earlier attempt of the lineage, oldest first (Optuna's)
PREVIOUS_RUN = "previous_run_id"  # the latest earlier attempt's MLflow run: its checkpoint
FRESH = "fer_sweep.fresh_start"  # system attribute: retries count again from this attempt
# Study attribute: a token made when the study is created, naming its work folder, so that a
# study deleted and created again (or another storage beside the same mlruns/) never finds
# the checkpoints of an earlier study of the same name.
WORK_KEY = "work_key"
SEEDS = "seeds"  # study attribute: seeds per configuration (absent: one)
# Several seeds: on the trial, each seed's objective value, MLflow run and once-per-run
# numbers (``{metric: [seed 0, seed 1, ...]}``), in seed order; the trial's own numbers under
# the metric names are the means over its seeds.
SEED_VALUES = "seed_values"
SEED_RUNS = "seed_run_ids"
SEED_METRICS = "seed_metrics"

# Beyond this many points a discrete space is treated as endless (no exhaustion check).
MAX_ENUMERATED_POINTS = 100_000


def study_name_for(spec: SweepSpec, budget: str) -> str:
    # Budgets are separate studies: a smoke result must never rank beside a thesis-length one.
    return f"{spec.name}-{budget}"


@dataclass(frozen=True)
class StudyPlan:
    """What a worker needs to run a study's trials, read back from the study's attributes.

    ``n_trials`` is the study's total of distinct configurations (None: until a timeout);
    ``timeout`` is the sweep file's bound on one invocation (a command's ``--timeout`` wins).
    """

    spec: SweepSpec
    budget_name: str
    n_trials: int | None
    seeds: int = 1  # seeds each configuration trains (its objective is their mean)

    @property
    def timeout(self) -> float | None:
        return self.spec.timeout


def plan_of(study: optuna.Study) -> StudyPlan:
    attrs = study.user_attrs
    if "spec_text" not in attrs:
        raise UserError(f"study '{study.study_name}' was not created by fer_sweep")
    spec = parse_sweep(attrs["spec_text"], f"{attrs['spec_name']}.yaml")
    n_trials = attrs.get("n_trials")
    # A study made before seeds existed trained one per configuration.
    return StudyPlan(
        spec, attrs["budget"], None if n_trials is None else int(n_trials), int(attrs.get(SEEDS, 1))
    )


def create_or_resume(
    spec: SweepSpec,
    settings: Settings,
    *,
    budget: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: optuna.storages.BaseStorage | None = None,
    seeds: int | None = None,
) -> optuna.Study:
    """Create the study for ``spec`` at ``budget``, or load it, and queue what it still needs.

    ``n_trials`` (else the file's, else the number of points the file lists) is the study's
    total: a grid or a file's ``trials`` are queued in order, up to that total, for the points
    that have no trial yet; a re-run with a larger total queues more. ``timeout`` is only
    checked here (a study needs a total or a time limit); it bounds each invocation.
    ``storage`` replaces the one ``settings`` names (tests use Optuna's in-memory storage).
    ``seeds`` (``--seeds``) overrides the seeds per configuration the file sets at
    ``budget``; a study keeps the number it started with (its configurations' objectives are
    means over that many seeds), so another one for a study with trials is refused.
    """
    budget = budget or spec.default_budget
    spec.budget(budget)  # unknown budget names fail here, before anything is written
    name = study_name_for(spec, budget)
    study = optuna.create_study(
        study_name=name,
        storage=storage if storage is not None else open_storage(settings),
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(spec),
        pruner=make_pruner(spec),
    )
    text = spec.path.read_text()
    known = study.user_attrs.get("spec_text")
    if known is not None and _definition(known) != _definition(text):
        raise UserError(
            f"study '{name}' was created from another version of {spec.path}; "
            f"put the change in a new sweep file (or a new 'name:'), or delete the study"
        )
    # The file cannot change under a study (above), so only --seeds can ask for another K.
    started = any(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    n_seeds = spec.seeds_at(budget, seeds)
    if SEEDS in study.user_attrs and seeds is None:
        n_seeds = int(study.user_attrs[SEEDS])  # a re-run without --seeds: what it started with
    known_seeds = int(study.user_attrs.get(SEEDS, 1))  # a study from before seeds: one
    if started and n_seeds != known_seeds:
        raise UserError(
            f"study '{name}' trains {known_seeds} seed(s) per configuration, not {n_seeds}; "
            "its trials' objectives are means over that many, so another number of seeds "
            "needs a new study (a new 'name:' or budget)"
        )
    points = arms(spec)
    target = n_trials or spec.n_trials or (len(points) if points else None)
    if target is None and timeout is None and spec.timeout is None:
        raise UserError(f"{spec.path}: set n_trials or timeout (or pass --n-trials / --timeout)")
    attrs = {
        "spec_text": text,
        "spec_name": spec.path.stem,
        "budget": budget,
        "n_trials": target,
        "description": spec.description,
        SEEDS: n_seeds,
    }
    for key, value in attrs.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    # The objective under its one name (optuna-dashboard and trials_dataframe show it, not
    # "Objective 0"); set again on resume, so that a study made before this is named too.
    objective = [names.objective(spec.objective_at)]
    if study.metric_names != objective:
        study.set_metric_names(objective)
    if WORK_KEY not in study.user_attrs:
        study.set_user_attr(WORK_KEY, uuid.uuid4().hex[:12])
    if points:
        enqueue_missing(study, points, target)
    return study


def work_folder(study: optuna.Study, root: int) -> str:
    """The work folder (under the store's ``work/``) of the lineage whose first attempt is
    trial ``root``: keyed by the study's own token, not by its name alone. A study made before
    the token existed is keyed by its storage and id instead."""
    key = study.user_attrs.get(WORK_KEY)
    if not key:
        storage = study._storage
        url = str(getattr(getattr(storage, "_backend", storage), "url", "") or "in-memory")
        sid = storage.get_study_id_from_name(study.study_name)
        key = hashlib.sha256(f"{url}|{sid}".encode()).hexdigest()[:12]
    return f"{study.study_name}-{key}/trial-{root:04d}"


def _definition(text: str) -> dict:
    """What a sweep file asks for; its description and comments may change under a study."""
    data = yaml.safe_load(text) or {}
    data.pop("description", None)
    return data


def enqueue_missing(study: optuna.Study, points: list[dict], target: int | None) -> int:
    """Queue, in order, the ``points`` no lineage holds yet, until ``target`` lineages exist.

    Returns how many were queued.
    """
    trials = study.get_trials(deepcopy=False)
    have = [params_of(first) for first in (lin[0] for lin in lineages(trials).values())]
    room = None if target is None else target - len(have)
    queued = 0
    for point in points:
        if room is not None and queued >= room:
            break
        if not any(same_point(point, h) for h in have):
            study.enqueue_trial(point, skip_if_exists=False)
            have.append(point)
            queued += 1
    return queued


# --- reading a study's trials -------------------------------------------------------------


def params_of(t: FrozenTrial) -> dict[str, Any]:
    """A trial's parameter values, also for a queued trial that has not asked for them yet."""
    return t.params or dict(t.system_attrs.get("fixed_params", {}))


def same_point(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def root_of(t: FrozenTrial) -> int:
    """The number of the first attempt of ``t``'s lineage."""
    return int(t.system_attrs.get(RETRY_OF, t.number))


def outcome_of_trial(t: FrozenTrial) -> Outcome | None:
    """How an attempt ended, from its own record; None while it is queued or running.

    A failed attempt that recorded nothing was lost: its worker died before it could.
    """
    if t.state == TrialState.COMPLETE:
        return Outcome.COMPLETE
    if t.state == TrialState.PRUNED:
        return Outcome.PRUNED
    if t.state == TrialState.FAIL:
        try:
            return Outcome(t.user_attrs.get(OUTCOME, Outcome.LOST))
        except ValueError:
            return Outcome.LOST
    return None


def skipped(t: FrozenTrial) -> bool:
    return t.state == TrialState.FAIL and t.user_attrs.get(OUTCOME) == Outcome.SKIPPED


def lineages(trials: Iterable[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """Attempts by lineage (keyed and ordered by the first attempt's number), oldest first;
    skipped attempts are left out."""
    out: dict[int, list[FrozenTrial]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if not skipped(t):
            out.setdefault(root_of(t), []).append(t)
    return dict(sorted(out.items()))


def started(lineage: list[FrozenTrial]) -> bool:
    """Whether any attempt of a lineage has run (or runs): it holds one of the study's slots."""
    return any(t.state != TrialState.WAITING for t in lineage)


def space_points(spec: SweepSpec) -> list[dict[str, Any]] | None:
    """Every point of a discrete space as Optuna params (conditional parameters honoured),
    or None when a parameter is continuous or there are too many points to list."""
    items = list(spec.params.items())
    if any(p.type != "fixed" and p.grid_values() is None for _, p in items):
        return None
    points: list[dict[str, Any]] = []

    def walk(i: int, chosen: dict[str, Any], sampled: dict[str, Any]) -> None:
        if len(points) > MAX_ENUMERATED_POINTS:
            return
        if i == len(items):
            points.append(sampled)
            return
        name, param = items[i]
        if not param.active(chosen):
            walk(i + 1, chosen, sampled)
        elif param.type == "fixed":
            walk(i + 1, {**chosen, name: param.value}, sampled)
        else:
            for value in param.grid_values():
                walk(i + 1, {**chosen, name: value}, {**sampled, name: value})

    walk(0, {}, {})
    return None if len(points) > MAX_ENUMERATED_POINTS else points


def summarize(study: optuna.Study) -> dict[str, int]:
    """Attempts per state (``skipped`` apart from ``fail``) and the configurations tried."""
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): 0 for s in TrialState}
    counts["skipped"] = 0
    for t in trials:
        counts["skipped" if skipped(t) else t.state.name.lower()] += 1
    counts["configurations"] = len(lineages(trials))
    return counts


def trial_config(plan: StudyPlan, study: str, t: FrozenTrial) -> TrainConfig:
    """The config trial ``t`` of ``study`` trained, rebuilt from its params and the plan."""
    spec = plan.spec
    values = trial_config_values(spec, expand(spec, t.params), spec.budget(plan.budget_name))
    return make_config(values, origin=f"study {study}, trial {t.number}")
