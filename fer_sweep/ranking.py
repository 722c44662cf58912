"""``best --top K``: finished trials ranked by PublicTest accuracy, beside the thesis's top 3.

Ranking uses the selection split (PublicTest) only; PrivateTest accuracy is shown, never
used to order, exactly as the thesis reports "private set accuracy" for chosen models.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

import optuna
from optuna.trial import TrialState

from fer_sweep import metric_names
from fer_sweep.errors import UserError
from fer_sweep.thesis import TOP3


@dataclass
class Ranked:
    rank: int
    study: str
    trial: int
    params: str
    epochs: int
    public_accuracy: float  # percent
    private_accuracy: float | None  # percent
    run_id: str


def _summary(params: dict) -> str:
    """The trial's sampled hyperparameters: what distinguishes it within its study."""
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def rank_trials(storage, *, study: str | None = None, top: int = 3) -> list[Ranked]:
    """The ``top`` complete trials of ``study`` (or of every study), best PublicTest first."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study is not None and study not in names:
        raise UserError(f"no study '{study}' (studies: {', '.join(sorted(names)) or 'none yet'})")
    rows = []
    for name in [study] if study else names:
        loaded = optuna.load_study(study_name=name, storage=storage)
        for t in loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            private = t.user_attrs.get(metric_names.PRIVATE_FINAL)
            rows.append(
                Ranked(
                    rank=0,
                    study=name,
                    trial=t.number,
                    params=_summary(t.params),
                    epochs=int(t.user_attrs.get("epochs_trained", 0)),
                    public_accuracy=100.0 * float(t.value),
                    private_accuracy=None if private is None else 100.0 * float(private),
                    run_id=t.user_attrs.get("mlflow_run_id", ""),
                )
            )
    rows.sort(key=lambda r: (-r.public_accuracy, r.study, r.trial))
    for i, row in enumerate(rows[:top], start=1):
        row.rank = i
    return rows[:top]


def thesis_rows(ranked: list[Ranked]) -> list[dict]:
    """The thesis's top 3 with the difference to our trial of the same rank (private)."""
    out = []
    for ref in TOP3:
        ours = ranked[ref.rank - 1] if len(ranked) >= ref.rank else None
        diff = None
        if ours is not None and ours.private_accuracy is not None:
            diff = round(ours.private_accuracy - ref.private_accuracy, 2)
        out.append({
            "rank": ref.rank, "recipe": ref.recipe, "dropout": ref.dropout,
            "batch_size": ref.batch_size, "epochs": ref.epochs,
            "private_accuracy": ref.private_accuracy, "ours_minus_thesis": diff,
        })  # fmt: skip
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


HEAD = ["rank", "study", "trial", "hyperparameters", "epochs", "PublicTest %", "PrivateTest %",
        "MLflow run"]  # fmt: skip
THESIS_HEAD = ["rank", "thesis recipe", "dropout", "batch", "epochs", "PrivateTest %",
               "ours - thesis"]  # fmt: skip


def _cells(r: Ranked) -> list[str]:
    return [str(r.rank), r.study, str(r.trial), r.params, str(r.epochs),
            _pct(r.public_accuracy), _pct(r.private_accuracy), r.run_id]  # fmt: skip


def _thesis_cells(t: dict) -> list[str]:
    return [str(t["rank"]), t["recipe"], t["dropout"], str(t["batch_size"]), str(t["epochs"]),
            _pct(t["private_accuracy"]), _signed(t["ours_minus_thesis"])]  # fmt: skip


def render(ranked: list[Ranked], fmt: str = "table") -> str:
    thesis = thesis_rows(ranked)
    if fmt == "json":
        return json.dumps({"trials": [asdict(r) for r in ranked], "thesis": thesis}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", *HEAD])
        for r in ranked:
            w.writerow(["fer-sweep", *_cells(r)])
        for t in thesis:
            w.writerow(["thesis", t["rank"], "", "", f"{t['recipe']}; dropout {t['dropout']}; "
                        f"batch {t['batch_size']}", t["epochs"], "", _pct(t["private_accuracy"]),
                        ""])  # fmt: skip
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = _md(HEAD, [_cells(r) for r in ranked]) if ranked else ["No finished trial yet."]
        return "\n".join([*lines, "", *_md(THESIS_HEAD, [_thesis_cells(t) for t in thesis])])
    if fmt == "table":
        return _table(ranked, thesis)
    raise UserError(f"unknown format '{fmt}' (known: table, markdown, csv, json)")


def _md(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return out


def _table(ranked: list[Ranked], thesis: list[dict]) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=160, file=io.StringIO())

    def table(title: str, head: list[str], rows: list[list[str]]) -> Table:
        out = Table(title=title)
        for h in head:
            out.add_column(h, overflow="fold")
        for row in rows:
            out.add_row(*row)
        return out

    if ranked:
        title = "fer-sweep: best trials by PublicTest accuracy"
        console.print(table(title, HEAD, [_cells(r) for r in ranked]))
    else:
        console.print("No finished trial yet.")
    title = "The thesis's top 3 (one run each; about 1 point is noise)"
    console.print(table(title, THESIS_HEAD, [_thesis_cells(t) for t in thesis]))
    return console.export_text().rstrip("\n")
