"""``best``: finished trials ranked like with like, beside the thesis's top 3.

- Ranking is within one study, which is one budget (``--study``); without it, each study's
  best trial is shown, grouped by budget, so a 2-epoch smoke result never sits beside a
  thesis-length one.
- Trials are ordered by their study's objective, PublicTest accuracy (the selection split);
  PrivateTest is shown, never used to order. Both PrivateTest numbers are shown and
  labelled: at the final epoch (what the thesis's Table 5.7 reports) and at the
  best-PublicTest epoch.
- "Ours minus thesis" is computed only for a trial whose config is one of the thesis's three
  recipes (:func:`fer_sweep.thesis.reference`), trained as long as the thesis trained it, on
  the whole PrivateTest split: recipe with recipe, never rank with rank.

Accuracies are fractions under the names of :mod:`fer_sweep.metric_names` in JSON, and
percent in the tables; differences to the thesis are in percentage points.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import metric_names as names
from fer_sweep import thesis
from fer_sweep.config import TrainConfig, make_config
from fer_sweep.errors import UserError
from fer_sweep.space import expand, trial_config_values, trial_label
from fer_sweep.study import RUN_ID, SEED_METRICS, SEED_RUNS, StudyPlan, plan_of
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
    per_seed: dict[str, list[float]] = field(default_factory=dict)  # K > 1: each seed's
    seed_runs: list[str] = field(default_factory=list)  # K > 1: each seed's MLflow run

    @property
    def ours_minus_thesis(self) -> float | None:
        """PrivateTest at the final epoch minus the thesis's, in points; None unless comparable."""
        if not self.comparable or self.private_final is None:
            return None
        return round(100 * self.private_final - TOP3[self.thesis_recipe - 1].private_accuracy, 2)


@dataclass
class Group:
    """Rows ranked together: one study's trials, or each study's best at one budget."""

    title: str
    budget: str
    rows: list[Ranked]
    report: tuple[str, ...] = ()  # the extra columns the study's file asks for (`report:`)


@dataclass
class Ranking:
    groups: list[Group]
    thesis: list[tuple[ThesisResult, Ranked | None]]  # each thesis model and our same recipe


def thesis_recipe(config: TrainConfig) -> int | None:
    """The thesis's rank (1-3) whose recipe ``config`` is, or None."""
    ref = reference(config)
    return None if ref is None else ref.rank


def trial_config(plan: StudyPlan, study: str, t: FrozenTrial) -> TrainConfig:
    """The config trial ``t`` of ``study`` trained, rebuilt from its params and the plan."""
    spec = plan.spec
    values = trial_config_values(spec, expand(spec, t.params), spec.budget(plan.budget_name))
    return make_config(values, origin=f"study {study}, trial {t.number}")


def _row(plan: StudyPlan, study: str, t: FrozenTrial) -> Ranked:
    spec = plan.spec
    config = trial_config(plan, study, t)
    attrs = t.user_attrs
    best_epoch = attrs.get(names.BEST_EPOCH)
    epochs = int(attrs.get(names.EPOCHS_TRAINED, config.epochs))
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
        comparable=thesis.comparable(config, epochs)[0] is not None,
        per_seed=dict(attrs.get(SEED_METRICS, {})),
        seed_runs=list(attrs.get(SEED_RUNS, [])),
    )


def _ranked(rows: list[Ranked]) -> list[Ranked]:
    rows.sort(key=lambda r: (-r.objective, r.study, r.trial))
    for i, row in enumerate(rows, start=1):
        row.rank = i
    return rows


def rank_trials(storage, *, study: str | None = None, top: int = 3) -> Ranking:
    """The ``top`` complete trials of ``study``; without a study, each study's best trial,
    grouped by budget. Beside them, the thesis's top 3 with our trial of the same recipe."""
    known = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    if study is not None and study not in known:
        raise UserError(f"no study '{study}' (studies: {', '.join(known) or 'none yet'})")
    per_study: dict[str, list[Ranked]] = {}
    report: tuple[str, ...] = ()
    for name in [study] if study else known:
        loaded = optuna.load_study(study_name=name, storage=storage)
        if "spec_text" not in loaded.user_attrs:
            continue  # not a fer_sweep study
        plan = plan_of(loaded)
        report = plan.spec.report
        complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        per_study[name] = _ranked([_row(plan, name, t) for t in complete])
    every = [r for rows in per_study.values() for r in rows]
    if study is not None:
        rows = per_study.get(study, [])
        budget = rows[0].budget if rows else ""
        groups = [Group(f"study {study}: its best trials by PublicTest accuracy", budget,
                        rows[:top], report)]  # fmt: skip
    else:
        by_budget: dict[str, list[Ranked]] = {}
        for rows in per_study.values():
            if rows:
                by_budget.setdefault(rows[0].budget, []).append(rows[0])
        groups = [Group(f"budget {b}: each study's best trial by PublicTest accuracy", b,
                        _ranked(rows)) for b, rows in sorted(by_budget.items())]  # fmt: skip
    thesis = []
    for ref in TOP3:
        same = [r for r in every if r.thesis_recipe == ref.rank and r.comparable]
        thesis.append((ref, max(same, key=lambda r: r.objective) if same else None))
    return Ranking(groups, thesis)


# --- rendering ----------------------------------------------------------------------------

# Two-line headers (the table breaks them there; markdown and CSV join them with a space).
HEAD = ["rank", "study", "trial", "hyperparameters", "epochs\n(best)",
        "PublicTest %\nat best epoch", "PrivateTest %\nat final epoch",
        "PrivateTest %\nat best-PublicTest epoch", "ours - thesis\n(points)",
        "MLflow run"]  # fmt: skip
THESIS_HEAD = ["rank", "thesis recipe", "dropout", "batch", "epochs",
               "PrivateTest %\nat final epoch", "ours (same recipe,\nsame length)",
               "ours - thesis\n(points)"]  # fmt: skip
# Columns of numbers and ids, which are never wrapped.
NO_WRAP = ("rank", "trial", "epochs", "batch", "PublicTest", "PrivateTest", "ours - thesis",
           "MLflow run")  # fmt: skip


def _flat(head: list[str]) -> list[str]:
    return [h.replace("\n", " ") for h in head]


THESIS_TITLE = ("The thesis's top 3 (Table 5.7: one run each, PrivateTest at the final epoch; "
                "about 1 point is noise)")  # fmt: skip


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def mean_sd(values: list[float]) -> str:
    """Accuracies (fractions) over seeds in percent: ``66.12 +- 0.41`` (mean +- sample sd),
    the value alone for one seed."""
    import statistics

    if len(values) < 2:
        return _pct(values[0]) if values else "-"
    return f"{100 * statistics.fmean(values):.2f} +- {100 * statistics.stdev(values):.2f}"


def _seeded(r: Ranked, name: str, value: float | None) -> str:
    """A cell of ``best``: the mean +- sd over the trial's seeds where it has several."""
    per = r.per_seed.get(name, [])
    return mean_sd(per) if len(per) > 1 else _pct(value)


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _head(report: tuple[str, ...]) -> list[str]:
    return [*HEAD[:-1], *report, HEAD[-1]]


def _reported(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):  # PrivateTest at each of the report_epochs
        return ", ".join(f"epoch {e}: {_pct(value[e])}" for e in sorted(value, key=int))
    if name in (names.BEST_EPOCH, names.EPOCHS_TRAINED):
        return str(int(value))
    return _pct(value)


def _cells(r: Ranked, report: tuple[str, ...] = ()) -> list[str]:
    epochs = f"{r.epochs} ({r.best_epoch})" if r.best_epoch else str(r.epochs)
    extra = [_reported(name, r.reported.get(name)) for name in report]
    return [str(r.rank), r.study, str(r.trial), r.params, epochs,
            _seeded(r, names.PUBLIC_BEST, r.public_best),
            _seeded(r, names.PRIVATE_FINAL, r.private_final),
            _seeded(r, names.PRIVATE_AT_BEST, r.private_at_best), _signed(r.ours_minus_thesis),
            *extra, r.run_id]  # fmt: skip


def _thesis_cells(ref: ThesisResult, ours: Ranked | None) -> list[str]:
    who = "-" if ours is None else f"{ours.study} trial {ours.trial}: {_pct(ours.private_final)}"
    diff = None if ours is None else ours.ours_minus_thesis
    return [str(ref.rank), ref.recipe, ref.dropout, str(ref.batch_size), str(ref.epochs),
            f"{ref.private_accuracy:.2f}", who, _signed(diff)]  # fmt: skip


def _json_row(r: Ranked) -> dict[str, Any]:
    return {
        "rank": r.rank, "study": r.study, "budget": r.budget, "trial": r.trial,
        "params": r.params, names.EPOCHS_TRAINED: r.epochs, names.BEST_EPOCH: r.best_epoch,
        "subset": r.subset, "objective": r.objective, names.PUBLIC_BEST: r.public_best,
        names.PRIVATE_FINAL: r.private_final, names.PRIVATE_AT_BEST: r.private_at_best,
        "thesis_recipe": r.thesis_recipe, "comparable_to_thesis": r.comparable,
        "ours_minus_thesis_points": r.ours_minus_thesis, "run_id": r.run_id, **r.reported,
        **({"seeds": r.per_seed, "seed_run_ids": r.seed_runs} if r.per_seed else {}),
    }  # fmt: skip


def render(ranking: Ranking, fmt: str = "table") -> str:
    """``ranking`` as ``table`` (terminal), ``markdown``, ``csv`` or ``json``."""
    if fmt == "json":
        return json.dumps(
            {
                "groups": [
                    {"title": g.title, "budget": g.budget, "trials": [_json_row(r) for r in g.rows]}
                    for g in ranking.groups
                ],
                "thesis": [
                    {
                        "rank": ref.rank,
                        "recipe": ref.recipe,
                        "dropout": ref.dropout,
                        "batch_size": ref.batch_size,
                        "epochs": ref.epochs,
                        names.PRIVATE_FINAL: round(ref.private_accuracy / 100, 4),
                        "ours": None
                        if ours is None
                        else {"study": ours.study, "trial": ours.trial},
                        "ours_minus_thesis_points": None
                        if ours is None
                        else ours.ours_minus_thesis,
                    }
                    for ref, ours in ranking.thesis
                ],
            },  # fmt: skip
            indent=2,
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        report = ranking.groups[0].report if len(ranking.groups) == 1 else ()
        w.writerow(["source", "budget", *_flat(_head(report))])
        for g in ranking.groups:
            for r in g.rows:
                w.writerow(["fer-sweep", g.budget, *_cells(r, report)])
        for ref, ours in ranking.thesis:
            cells = _thesis_cells(ref, ours)
            w.writerow(["thesis", "thesis", ref.rank, "", "", f"{ref.recipe}; dropout "
                        f"{ref.dropout}; batch {ref.batch_size}", ref.epochs, "", cells[5], "",
                        cells[7], *[""] * len(report), ""])  # fmt: skip
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines: list[str] = []
        for g in ranking.groups:
            lines += [f"**{g.title}**", ""]
            rows = [_cells(r, g.report) for r in g.rows]
            lines += _md(_flat(_head(g.report)), rows) if rows else ["No finished trial."]
            lines.append("")
        if not any(g.rows for g in ranking.groups):
            lines = ["No finished trial yet.", ""]
        cells = [_thesis_cells(ref, ours) for ref, ours in ranking.thesis]
        return "\n".join([*lines, f"**{THESIS_TITLE}**", "", *_md(_flat(THESIS_HEAD), cells)])
    if fmt == "table":
        return _table(ranking)
    raise UserError(f"unknown format '{fmt}' (known: table, markdown, csv, json)")


def _md(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return out


def _table(ranking: Ranking) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=200, file=io.StringIO())

    def table(title: str, head: list[str], rows: list[list[str]]) -> Table:
        out = Table(title=title)
        for h in head:
            out.add_column(h, overflow="fold", no_wrap=h.startswith(NO_WRAP))
        for row in rows:
            out.add_row(*row)
        return out

    shown = False
    for g in ranking.groups:
        if g.rows:
            rows = [_cells(r, g.report) for r in g.rows]
            console.print(table(g.title, _head(g.report), rows))
            shown = True
    if not shown:
        console.print("No finished trial yet.")
    cells = [_thesis_cells(ref, ours) for ref, ours in ranking.thesis]
    console.print(table(THESIS_TITLE, THESIS_HEAD, cells))
    return console.export_text().rstrip("\n")
