"""``best``: finished trials ranked like with like, beside the thesis's top 3.

- Like with like is one budget: ``--study`` ranks that study's trials (a study is one sweep
  file at one budget); without it, ``--top K`` ranks the K best trials of all studies at the
  same budget (its name and what it trains: images per split and epochs), one table per
  budget, so a 2-epoch smoke result never sits beside a thesis-length one. The budget is in
  each table's title; a budget on a subset labels its accuracy columns with the subset's size.
- Trials are ordered by their study's objective, PublicTest accuracy (the selection split);
  PrivateTest is shown, never used to order. Both PrivateTest numbers are shown and
  labelled: at the final epoch (what the thesis's Table 5.7 reports) and at the
  best-PublicTest epoch.
- "Ours minus thesis" is computed only for a trial that :func:`fer_sweep.thesis.comparable`
  allows: one of the thesis's three recipes, trained as long as the thesis trained it, on
  the whole PrivateTest split; recipe with recipe, never rank with rank. Where it is blank,
  a footnote marker says why (that rule's own reasons).
- The tables themselves are :mod:`._tables`': the terminal's fits its width (readable at 100
  columns), with the MLflow run ids listed under it, whole; they are columns of the other
  formats.

Accuracies are fractions under the names of :mod:`fer_sweep.metric_names` in JSON, and
percent in the tables; differences to the thesis are in percentage points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import metric_names as names
from fer_sweep import thesis
from fer_sweep.config import TrainConfig
from fer_sweep.errors import UserError
from fer_sweep.lifecycle import (
    RUN_ID,
    SEED_METRICS,
    SEED_RUNS,
    StudyPlan,
    plan_of,
    trial_config,
)
from fer_sweep.search import Budget, trial_label
from fer_sweep.thesis import TOP3, ThesisResult, reference


@dataclass
class Ranked:
    """One trial in a ranking. Accuracies are fractions (0-1), None when not recorded."""

    rank: int
    study: str
    budget: str
    trial: int
    params: str  # the sampled hyperparameters, in words
    epochs: int  # epochs trained
    best_epoch: int | None
    subset: int  # images per split (0: all of them)
    objective: float  # the study's objective (PublicTest at its best or last epoch)
    public_best: float | None
    private_final: float | None
    private_at_best: float | None
    thesis_recipe: int | None  # the thesis's rank whose recipe this trial trains, if any
    run_id: str
    reported: dict[str, float | None] = field(default_factory=dict)  # the study's `report:`
    comparable: bool = False  # thesis.comparable: its recipe, its length, the whole data
    why_not: str = ""  # thesis.comparable's reason when it is not
    per_seed: dict[str, list[float]] = field(default_factory=dict)  # K > 1: each seed's
    seed_runs: list[str] = field(default_factory=list)  # K > 1: each seed's MLflow run

    @property
    def ours_minus_thesis(self) -> float | None:
        """PrivateTest at the final epoch minus the thesis's, in points; None unless comparable."""
        if not self.comparable or self.private_final is None:
            return None
        return round(100 * self.private_final - TOP3[self.thesis_recipe - 1].private_accuracy, 2)

    @property
    def no_difference_because(self) -> str:
        """Why :attr:`ours_minus_thesis` is None, in words ("" when it is not)."""
        if self.ours_minus_thesis is not None:
            return ""
        if self.comparable:
            return "no PrivateTest accuracy at the final epoch recorded"
        if self.thesis_recipe is None:
            return self.why_not
        return f"the thesis-top{self.thesis_recipe} recipe, but {self.why_not}"


@dataclass
class Group:
    """Rows ranked together: one study's trials, or the trials of every study at one budget."""

    title: str
    budget: str
    rows: list[Ranked]
    report: tuple[str, ...] = ()  # the extra columns the study's file asks for (`report:`)
    subset: int = 0  # the budget's images per split (0: all), which labels its accuracies


@dataclass
class Ranking:
    groups: list[Group]
    thesis: list[tuple[ThesisResult, Ranked | None]]  # each thesis model and our same recipe
    # Why a thesis model has no "ours" beside it, by its rank.
    thesis_unmatched: dict[int, str] = field(default_factory=dict)


def thesis_recipe(config: TrainConfig) -> int | None:
    """The thesis's rank (1-3) whose recipe ``config`` is, or None."""
    ref = reference(config)
    return None if ref is None else ref.rank


def _row(plan: StudyPlan, study: str, t: FrozenTrial) -> Ranked:
    spec = plan.spec
    config = trial_config(plan, study, t)
    attrs = t.user_attrs
    best_epoch = attrs.get(names.BEST_EPOCH)
    epochs = int(attrs.get(names.EPOCHS_TRAINED, config.epochs))
    ref, why_not = thesis.comparable(config, epochs)
    return Ranked(
        rank=0,
        study=study,
        budget=plan.budget_name,
        trial=t.number,
        params=trial_label(spec, t.params),
        epochs=epochs,
        best_epoch=None if best_epoch is None else int(best_epoch),
        subset=config.subset,
        objective=float(t.value),
        public_best=attrs.get(names.PUBLIC_BEST),
        private_final=attrs.get(names.PRIVATE_FINAL),
        private_at_best=attrs.get(names.PRIVATE_AT_BEST),
        thesis_recipe=thesis_recipe(config),
        run_id=attrs.get(RUN_ID, ""),
        reported={name: attrs.get(name) for name in spec.report},
        comparable=ref is not None,
        why_not=why_not,
        per_seed=dict(attrs.get(SEED_METRICS, {})),
        seed_runs=list(attrs.get(SEED_RUNS, [])),
    )


def _ranked(rows: list[Ranked]) -> list[Ranked]:
    rows.sort(key=lambda r: (-r.objective, r.study, r.trial))
    for i, row in enumerate(rows, start=1):
        row.rank = i
    return rows


@dataclass
class _Study:
    rows: list[Ranked]
    budget_name: str
    budget: Budget
    objective: str  # the objective's name (metric_names.objective)
    report: tuple[str, ...]


def rank_trials(storage, *, study: str | None = None, top: int = 3) -> Ranking:
    """The ``top`` complete trials of ``study``; without a study, the ``top`` complete trials
    of all studies at each budget, one group per budget. Beside them, the thesis's top 3 with
    our best trial of the same recipe that :func:`fer_sweep.thesis.comparable` allows."""
    known = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    if study is not None and study not in known:
        raise UserError(f"no study '{study}' (studies: {', '.join(known) or 'none yet'})")
    per_study: dict[str, _Study] = {}
    for name in [study] if study else known:
        loaded = optuna.load_study(study_name=name, storage=storage)
        if study is None and "spec_text" not in loaded.user_attrs:
            continue  # not a fer_sweep study (with --study, plan_of says so)
        plan = plan_of(loaded)
        complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        rows = _ranked([_row(plan, name, t) for t in complete])
        per_study[name] = _Study(
            rows,
            plan.budget_name,
            plan.spec.budget(plan.budget_name),
            names.objective(plan.spec.objective_at),
            plan.spec.report,
        )
    every = [r for s in per_study.values() for r in s.rows]
    groups = []
    if study is not None:
        one = per_study[study]
        groups.append(
            Group(
                f"study {study}, budget {one.budget_name} ({one.budget.describe()}): its top "
                f"{top} finished trials by {one.objective}",
                one.budget_name,
                one.rows[:top],
                one.report,
                one.budget.subset,
            )
        )
    else:
        # Like with like: the same budget (its name and what it trains) and the same
        # objective. Each study's own `report:` columns stay with `best --study`.
        pooled: dict[tuple[str, Budget, str], list[Ranked]] = {}
        for s in per_study.values():
            if s.rows:
                pooled.setdefault((s.budget_name, s.budget, s.objective), []).extend(s.rows)
        for (name, budget, objective), rows in sorted(pooled.items(), key=lambda kv: kv[0][0]):
            studies = len({r.study for r in rows})
            groups.append(
                Group(
                    f"budget {name} ({budget.describe()}): the top {top} finished trials of "
                    f"{studies} stud{'y' if studies == 1 else 'ies'} by {objective}",
                    name,
                    _ranked(rows)[:top],
                    (),
                    budget.subset,
                )
            )
    pairs, unmatched = [], {}
    for ref in TOP3:
        same = [r for r in every if r.thesis_recipe == ref.rank]
        fair = [r for r in same if r.comparable]
        ours = max(fair, key=lambda r: r.objective) if fair else None
        pairs.append((ref, ours))
        if ours is not None and ours.ours_minus_thesis is None:
            unmatched[ref.rank] = ours.no_difference_because
        elif ours is None and same:
            # The one nearest to the thesis's run: on the most images, then the longest.
            near = max(same, key=lambda r: (r.subset == 0, r.subset, r.epochs, r.objective))
            unmatched[ref.rank] = (
                f"no comparable trial of this recipe yet (the nearest, "
                f"{near.study} trial {near.trial}: {near.why_not})"
            )
        elif ours is None:
            unmatched[ref.rank] = (
                f"no finished trial of this recipe yet (the thesis trained "
                f"it {ref.epochs} epochs on all images)"
            )
    return Ranking(groups, pairs, unmatched)
