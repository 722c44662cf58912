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
- The terminal table fits the terminal's width (readable at 100 columns); the MLflow run ids
  are listed under it, whole, and are columns of the other formats.

Accuracies are fractions under the names of :mod:`fer_sweep.metric_names` in JSON, and
percent in the tables; differences to the thesis are in percentage points.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fer_sweep import metric_names as names
from fer_sweep import thesis
from fer_sweep.config import TrainConfig, make_config
from fer_sweep.errors import UserError
from fer_sweep.space import Budget, expand, trial_config_values, trial_label
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


# --- rendering ----------------------------------------------------------------------------

RUN = "MLflow run"
DIFF = "ours -\nthesis\n(points)"
HYPER = "hyperparameters"
WHY = "why no ours - thesis"


def _head(report: tuple[str, ...], subset: int = 0) -> list[str]:
    """The rows' header, the table breaking it at the newlines (markdown and CSV join them).
    Accuracies of a budget on a subset say so, so that they never read as figures on the
    thesis's whole PrivateTest split."""
    on = f"\n({subset} images)" if subset else ""
    return [
        "rank",
        "study",
        "trial",
        HYPER,
        "epochs\n(best)",
        f"PublicTest %\nbest epoch{on}",
        f"PrivateTest %\nfinal epoch{on}",
        f"PrivateTest %\nat best-\nPublicTest\nepoch{on}",
        DIFF,
        *report,
        RUN,
    ]


THESIS_HEAD = [
    "rank",
    "thesis recipe",
    "dropout",
    "batch",
    "epochs",
    "thesis\nPrivateTest %\nfinal epoch",
    "ours (same recipe,\nsame length)",
    DIFF,
]
# Below this many columns for the hyperparameters, they go under the numbers (see _table).
MIN_HYPER = 30
MAX_WORD = 24  # a text column is never made wider than this to keep a word whole
PAD = 2  # columns a table column takes besides its text (padding and divider)
# Columns of numbers and ids, which are never wrapped.
NO_WRAP = (
    "rank",
    "trial",
    "epochs",
    "batch",
    "PublicTest",
    "PrivateTest",
    DIFF,
    "thesis\nPrivateTest",
    RUN,
)


def _flat(head: list[str]) -> list[str]:
    return [h.replace("-\n", "-").replace("\n", " ") for h in head]


THESIS_TITLE = (
    "The thesis's top 3 (Table 5.7: one run each, PrivateTest at the final epoch "
    "on all 3,589 images; about 1 point is noise)"
)


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


class _Notes:
    """Footnotes of one table: each distinct reason gets a letter, in order of first use."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, diff: float | None, reason: str) -> str:
        """The difference, or ``-`` with the letter of the reason it is blank."""
        if diff is not None or not reason:
            return _signed(diff)
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"- [{chr(ord('a') + self.reasons.index(reason))}]"

    def lines(self) -> list[str]:
        return [f"[{chr(ord('a') + i)}] {why}" for i, why in enumerate(self.reasons)]


def _reported(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):  # PrivateTest at each of the report_epochs
        return ", ".join(f"epoch {e}: {_pct(value[e])}" for e in sorted(value, key=int))
    if name in (names.BEST_EPOCH, names.EPOCHS_TRAINED):
        return str(int(value))
    return _pct(value)


def _cells(r: Ranked, report: tuple[str, ...], diff: str) -> list[str]:
    epochs = f"{r.epochs} ({r.best_epoch})" if r.best_epoch else str(r.epochs)
    extra = [_reported(name, r.reported.get(name)) for name in report]
    return [
        str(r.rank),
        r.study,
        str(r.trial),
        r.params,
        epochs,
        _seeded(r, names.PUBLIC_BEST, r.public_best),
        _seeded(r, names.PRIVATE_FINAL, r.private_final),
        _seeded(r, names.PRIVATE_AT_BEST, r.private_at_best),
        diff,
        *extra,
        r.run_id,
    ]


def _thesis_cells(ref: ThesisResult, ours: Ranked | None, diff: str) -> list[str]:
    who = "-" if ours is None else f"{ours.study} trial {ours.trial}: {_pct(ours.private_final)}"
    return [
        str(ref.rank),
        ref.recipe,
        ref.dropout,
        str(ref.batch_size),
        str(ref.epochs),
        f"{ref.private_accuracy:.2f}",
        who,
        diff,
    ]


def _thesis_diff(ours: Ranked | None) -> float | None:
    return None if ours is None else ours.ours_minus_thesis


def _json_row(r: Ranked) -> dict[str, Any]:
    return {
        "rank": r.rank,
        "study": r.study,
        "budget": r.budget,
        "trial": r.trial,
        "params": r.params,
        names.EPOCHS_TRAINED: r.epochs,
        names.BEST_EPOCH: r.best_epoch,
        "subset": r.subset,
        "objective": r.objective,
        names.PUBLIC_BEST: r.public_best,
        names.PRIVATE_FINAL: r.private_final,
        names.PRIVATE_AT_BEST: r.private_at_best,
        "thesis_recipe": r.thesis_recipe,
        "comparable_to_thesis": r.comparable,
        "ours_minus_thesis_points": r.ours_minus_thesis,
        "no_ours_minus_thesis_because": r.no_difference_because or None,
        "run_id": r.run_id,
        **r.reported,
        **({"seeds": r.per_seed, "seed_run_ids": r.seed_runs} if r.per_seed else {}),
    }


def render(ranking: Ranking, fmt: str = "table", *, width: int | None = None) -> str:
    """``ranking`` as ``table`` (terminal), ``markdown``, ``csv`` or ``json``.

    ``width``: the table's width in columns (default: the terminal's, 100 when there is none).
    """
    if fmt == "json":
        return json.dumps(
            {
                "groups": [
                    {
                        "title": g.title,
                        "budget": g.budget,
                        "subset": g.subset,
                        "trials": [_json_row(r) for r in g.rows],
                    }
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
                        "ours_minus_thesis_points": _thesis_diff(ours),
                        "no_ours_minus_thesis_because": ranking.thesis_unmatched.get(ref.rank),
                    }
                    for ref, ours in ranking.thesis
                ],
            },
            indent=2,
        )
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        report = ranking.groups[0].report if len(ranking.groups) == 1 else ()
        head = _flat(_head(report))
        at = head.index(_flat([DIFF])[0]) + 1
        w.writerow(["source", "budget", *head[:at], WHY, *head[at:]])
        for g in ranking.groups:
            for r in g.rows:
                cells = _cells(r, report, _signed(r.ours_minus_thesis))
                w.writerow(
                    [
                        "fer-sweep",
                        g.budget,
                        *cells[:at],
                        r.no_difference_because,
                        *cells[at:],
                    ]
                )
        for ref, ours in ranking.thesis:
            diff = _thesis_diff(ours)
            hyper = f"{ref.recipe}; dropout {ref.dropout}; batch {ref.batch_size}"
            w.writerow(
                [
                    "thesis",
                    "thesis",
                    ref.rank,
                    "",
                    "",
                    hyper,
                    ref.epochs,
                    "",
                    f"{ref.private_accuracy:.2f}",
                    "",
                    _signed(diff),
                    ranking.thesis_unmatched.get(ref.rank, ""),
                    *[""] * len(report),
                    "",
                ]
            )
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines: list[str] = []
        for g in ranking.groups:
            lines += [f"**{g.title}**", ""]
            notes = _Notes()
            rows = [
                _cells(r, g.report, notes.mark(r.ours_minus_thesis, r.no_difference_because))
                for r in g.rows
            ]
            lines += _md(_flat(_head(g.report, g.subset)), rows) if rows else ["No finished trial."]
            lines += ["", *(f"{n}  " for n in notes.lines()), ""] if notes.reasons else [""]
        if not any(g.rows for g in ranking.groups):
            lines = ["No finished trial yet.", ""]
        notes = _Notes()
        cells = [
            _thesis_cells(
                ref,
                ours,
                notes.mark(_thesis_diff(ours), ranking.thesis_unmatched.get(ref.rank, "")),
            )
            for ref, ours in ranking.thesis
        ]
        return "\n".join(
            [
                *lines,
                f"**{THESIS_TITLE}**",
                "",
                *_md(_flat(THESIS_HEAD), cells),
                *([""] + [f"{n}  " for n in notes.lines()] if notes.reasons else []),
            ]
        )
    if fmt == "table":
        return _table(ranking, width or shutil.get_terminal_size((100, 24)).columns)
    raise UserError(f"unknown format '{fmt}' (known: table, markdown, csv, json)")


def _md(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return out


def _table(ranking: Ranking, width: int) -> str:
    from rich import box
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(record=True, width=width, file=io.StringIO())

    def widths(head: list[str], rows: list[list[str]]) -> list[int]:
        """Each column's narrowest readable width: a number or id whole, a text column
        its longest word (capped: a longer one folds), the hyperparameters MIN_HYPER."""
        out = []
        for i, h in enumerate(head):
            cells = [*h.split("\n"), *(row[i] for row in rows)]
            if h.startswith(NO_WRAP):
                out.append(max(cell_len(c) for c in cells))
            else:
                words = [cell_len(w) for c in cells for w in c.split()] or [1]
                out.append(MIN_HYPER if h == HYPER else min(max(words), MAX_WORD))
        return out

    def layout(head: list[str], rows: list[list[str]]) -> list[int | None]:
        """Column widths within ``width``: rich's own where everything fits unwrapped, else
        each column's narrowest readable width plus a share of what is left, by how much
        it wants (rich's collapse would cut the longest words first)."""
        least = widths(head, rows)
        most = [
            max(cell_len(c) for c in [*h.split("\n"), *(row[i] for row in rows)])
            for i, h in enumerate(head)
        ]
        room = width - PAD * len(head) - 1
        if sum(most) <= room or sum(least) > room:
            return [None] * len(head)
        want = [m - n for m, n in zip(most, least, strict=True)]
        spare = room - sum(least)
        return [n + spare * w // sum(want) for n, w in zip(least, want, strict=True)]

    def table(title: str, head: list[str], rows: list[list[str]]) -> Table:
        # Light borders, one padding between columns: the numbers fit in 100 columns.
        out = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
        for h, fixed in zip(head, layout(head, rows), strict=True):
            out.add_column(h, overflow="fold", no_wrap=h.startswith(NO_WRAP), width=fixed)
        for row in rows:
            out.add_row(*(Text(c) for c in row))  # Text: "[a]" is a marker, not rich markup
        return out

    def fits(head: list[str], rows: list[list[str]]) -> bool:
        return sum(widths(head, rows)) + PAD * len(head) + 1 <= width

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    shown = False
    for g in ranking.groups:
        if not g.rows:
            continue
        notes = _Notes()
        head = _head(g.report, g.subset)
        rows = [
            _cells(r, g.report, notes.mark(r.ours_minus_thesis, r.no_difference_because))
            for r in g.rows
        ]
        if fits(head, rows):
            console.print(table(g.title, head, rows))
        else:
            # Too narrow for the words and the 32-character run ids beside the numbers: the
            # numbers first, then what each rank trained and its run, in a table of its own.
            apart = [head.index(HYPER), head.index(RUN)]
            keep = [i for i in range(len(head)) if i not in apart]
            console.print(
                table(g.title, [head[i] for i in keep], [[row[i] for i in keep] for row in rows])
            )
            console.print(
                table(
                    "",
                    ["rank", *(head[i] for i in apart)],
                    [[row[0], *(row[i] for i in apart)] for row in rows],
                )
            )
        for line in notes.lines():
            say(line)
        say("")
        shown = True
    if not shown:
        say("No finished trial yet.")
    notes = _Notes()
    cells = [
        _thesis_cells(
            ref, ours, notes.mark(_thesis_diff(ours), ranking.thesis_unmatched.get(ref.rank, ""))
        )
        for ref, ours in ranking.thesis
    ]
    console.print(table(THESIS_TITLE, THESIS_HEAD, cells))
    for line in notes.lines():
        say(line)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()).rstrip("\n")
