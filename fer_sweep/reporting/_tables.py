"""``best``'s tables: the ranked trials beside the thesis's top 3, as text, markdown, CSV, JSON."""

from __future__ import annotations

import csv
import io
import json
import shutil
from typing import Any

from fer_sweep import metric_names as names
from fer_sweep.errors import UserError
from fer_sweep.reporting._ranking import Ranked, Ranking
from fer_sweep.thesis import ThesisResult
from fer_sweep.tracking import mean_sd, pct

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


def _seeded(r: Ranked, name: str, value: float | None) -> str:
    """A cell of ``best``: the mean +- sd over the trial's seeds where it has several."""
    per = r.per_seed.get(name, [])
    return mean_sd(per) if len(per) > 1 else pct(value)


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
        return ", ".join(f"epoch {e}: {pct(value[e])}" for e in sorted(value, key=int))
    if name in (names.BEST_EPOCH, names.EPOCHS_TRAINED):
        return str(int(value))
    return pct(value)


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
    who = "-" if ours is None else f"{ours.study} trial {ours.trial}: {pct(ours.private_final)}"
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
