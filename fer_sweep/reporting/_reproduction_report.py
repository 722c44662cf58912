"""The reproduction's report beside Table 5.7, written from what is on disk.

- ``OUT/thesis-reproduction.csv``: one row per recipe and seed (finished or not);
- ``OUT/thesis-reproduction.md``: per recipe and seed the PrivateTest accuracy at the final
  epoch (Table 5.7's number) and at the best-PublicTest epoch, mean and standard deviation
  over seeds against the thesis, hardware, backend, wall time per epoch, and the top-3
  ensemble (one model per recipe, same seed) with and without flip TTA;
- ``OUT/thesis-reproduction-curves.png``: the learning curves of every run.

Only measured numbers are written: a run that has not finished shows how far it got.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_sweep.config import TrainConfig
from fer_sweep.data import Dataset
from fer_sweep.reporting import _comparisons as comparisons
from fer_sweep.reporting._comparisons import Arm
from fer_sweep.reporting._reproduction_folders import (
    RECIPES,
    RESULT_FILE,
    SESSIONS_FILE,
    checkpoint_config,
    checkpoint_state,
    last_session,
    report_seeds,
    run_config,
    workdir,
)
from fer_sweep.thesis import TOP3, comparable
from fer_sweep.training import predictions

THESIS_PRIVATE = {f"thesis-top{t.rank}": t.private_accuracy for t in TOP3}


REPORT = "thesis-reproduction.md"


TABLE = "thesis-reproduction.csv"


FIGURE = "thesis-reproduction-curves.png"


# Hand-written: what a gap to the thesis was traced to. The report is rewritten after every
# run, so what a person found lives in its own file and the report carries it in.
NOTES = "thesis-reproduction-notes.md"


GAP_TO_EXPLAIN = 1.5  # points below the thesis (mean over seeds) that call for a reason


@dataclass
class Row:
    recipe: str
    seed: int
    status: str  # finished | stopped after epoch k of n | shortened to n epochs | not run yet
    epochs_done: int
    epochs: int
    private_final: float | None  # percent
    private_at_best_epoch: float | None  # percent
    best_epoch: int | None
    public_best: float | None  # percent
    seconds_per_epoch: float | None  # median over the run's epochs
    backend: str
    hardware: str
    recent_seconds_per_epoch: float | None = None  # median over its latest session's epochs

    @property
    def pace(self) -> float | None:
        """The epoch time to expect now: its latest session's, else its whole run's."""
        return self.recent_seconds_per_epoch or self.seconds_per_epoch


@dataclass
class Session:
    """One start or resume of a run and the epochs it completed before it stopped."""

    started: str
    first_epoch: int
    last_epoch: int  # first_epoch - 1 when it completed none
    backend: str
    hardware: str
    seconds: list[float]  # wall time of each of its epochs


def sessions(folder: Path) -> list[Session]:
    """The run's sessions with the epochs each trained, from sessions.json and the history.

    A session ends where the next one starts (an epoch it left half done is redone by the
    next), the last one at the newest completed epoch.
    """
    path = folder / SESSIONS_FILE
    if not path.exists():
        return []
    starts = json.loads(path.read_text())
    history = _history_of(folder) or {}
    seconds = history.get("epoch_seconds", [])
    ends = [s["from_epoch"] for s in starts[1:]] + [len(seconds)]
    return [
        Session(
            s["started"],
            s["from_epoch"] + 1,
            end,
            s["backend"],
            s["hardware"],
            seconds[s["from_epoch"] : end],
        )
        for s, end in zip(starts, ends, strict=True)
    ]


def reproduction_rows(out: Path, recipes=RECIPES, seeds=(0, 1, 2)) -> list[Row]:
    """One row per recipe and seed from the run folders (finished, partial or absent)."""
    rows = []
    for recipe in recipes:
        epochs = run_config(recipe, 0).epochs
        for seed in seeds:
            folder = workdir(out, recipe, seed)
            if (folder / RESULT_FILE).exists():
                r = json.loads((folder / RESULT_FILE).read_text())
                ran = r["config"]["epochs"]
                # thesis.comparable decides it, as for best and the MLflow notes.
                try:
                    ref, _ = comparable(TrainConfig(**r["config"]), r["epochs_trained"])
                except ValueError:  # a config this version cannot rebuild: not comparable
                    ref = None
                status = "finished" if ref is not None else f"shortened to {ran} epochs"
                rows.append(
                    Row(
                        recipe,
                        seed,
                        status,
                        r["epochs_trained"],
                        ran,
                        100 * r["private_final"],
                        100 * r["private_at_best_epoch"],
                        r["best_epoch"],
                        100 * r["public_best"],
                        _median(r["history"].get("epoch_seconds")),
                        r["backend"],
                        r["hardware"],
                    )
                )
                continue
            state = checkpoint_state(folder)
            if state is None:
                rows.append(
                    Row(
                        recipe, seed, "not run yet", 0, epochs, None, None, None, None, None, "", ""
                    )
                )
                continue
            done, ran = state["epoch"], checkpoint_config(folder)["epochs"]
            last = last_session(folder)
            rows.append(
                Row(
                    recipe,
                    seed,
                    f"stopped after epoch {done} of {ran}",
                    done,
                    ran,
                    None,
                    None,
                    state["best_epoch"] or None,
                    100 * state["best_val_accuracy"] if done else None,
                    _median(state["history"].get("epoch_seconds")),
                    last.get("backend", ""),
                    last.get("hardware", ""),
                    _recent_pace(folder),
                )
            )
    return rows


def _recent_pace(folder: Path) -> float | None:
    """Median epoch time of the newest session that completed an epoch: the pace to expect
    now, where the run's median still carries older hardware or allocators."""
    for session in reversed(sessions(folder)):
        if session.seconds:
            return _median(session.seconds)
    return None


def _median(values) -> float | None:
    return statistics.median(values) if values else None


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def ensemble_dir(out: Path, seed: int) -> Path:
    """Where the top-3 ensemble of ``seed`` keeps its per-image predictions."""
    return Path(out) / "work" / f"top3-ensemble-seed{seed}"


def _ensemble_predictions(out: Path, dataset: Dataset | None, seed: int):
    """The top-3 ensemble of ``seed`` on PrivateTest (``ensemble`` and ``ensemble+tta``), read
    from its predictions file, or scored from the three final models into it when all three
    finished and ``dataset`` is given; None otherwise."""
    from fer_sweep.training import FINAL_MODEL

    path = ensemble_dir(out, seed) / predictions.FILE
    if path.exists():
        return predictions.load(path)
    if dataset is None or not all((workdir(out, r, seed) / RESULT_FILE).exists() for r in RECIPES):
        return None
    from fer_sweep.reporting._ensemble import ensemble_probabilities

    models = [workdir(out, r, seed) / FINAL_MODEL for r in RECIPES]
    images, _ = dataset.arrays("PrivateTest")
    scored = predictions.for_dataset(dataset, ("PrivateTest",))
    for variant, tta in (("ensemble", False), ("ensemble" + predictions.TTA, True)):
        scored.splits["PrivateTest"].add(variant, ensemble_probabilities(models, images, tta=tta))
    path.parent.mkdir(parents=True, exist_ok=True)
    return predictions.load(predictions.save(scored, path))


def _ensembles(out: Path, dataset: Dataset | None, seeds) -> list[tuple[int, float, float, str]]:
    """(seed, accuracy, accuracy with flip TTA, length) of the three recipes' final models,
    in %; length says whether all three ran the thesis's epochs."""
    found = []
    for seed in seeds:
        scored = _ensemble_predictions(out, dataset, seed)
        if scored is None:
            continue
        private = scored.split("PrivateTest")
        plain, tta = (private.correct(v).mean() for v in ("ensemble", "ensemble+tta"))
        full = all(
            _result(out, r, seed)["config"]["epochs"] == run_config(r, seed).epochs for r in RECIPES
        )
        found.append((seed, 100 * plain, 100 * tta, "full" if full else "shortened"))
    return found


def _result(out: Path, recipe: str, seed: int) -> dict:
    return json.loads((workdir(out, recipe, seed) / RESULT_FILE).read_text())


def write_report(
    out: Path, dataset: Dataset | None = None, seeds: tuple[int, ...] | None = None
) -> Path:
    """Write the CSV, the Markdown report and the curves figure from the run folders: of
    ``seeds``, by default every seed the report lists (:func:`report_seeds`), whichever runs
    the command that writes it trained."""
    out = Path(out)
    seeds = report_seeds(out) if seeds is None else seeds
    rows = reproduction_rows(out, seeds=seeds)
    with (out / TABLE).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(Row.__dataclass_fields__)
        for r in rows:
            w.writerow([getattr(r, k) for k in Row.__dataclass_fields__])
    _plot_curves(out, rows)
    lines = [
        "# The thesis's top 3, reproduced at full length",
        "",
        "Written by `python -m fer_sweep reproduce` from the run folders under `work/`; "
        "accuracies in percent on the whole PrivateTest split (3,589 images), each run on all "
        "28,709 training images with the preset's own length (80 / 80 / 100 epochs). "
        '"final" is the last epoch\'s weights (Table 5.7\'s number); "at best epoch" the '
        'weights of the epoch with the best PublicTest accuracy. "s / epoch" is the median '
        "wall time of an epoch (its PublicTest pass included) on the hardware named, which "
        "may have been shared with other work; each run's `work/*/sessions.json` lists every "
        "start and resume.",
        "",
        "| recipe | seed | status | PrivateTest final | PrivateTest at best epoch | best epoch "
        "| PublicTest best | s / epoch | backend | hardware |",
        # (only "finished" rows ran the thesis's length; they alone are compared below)
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.recipe} | {r.seed} | {r.status} | {_fmt(r.private_final)} | "
            f"{_fmt(r.private_at_best_epoch)} | {_fmt(r.best_epoch, 'd')} | "
            f"{_fmt(r.public_best)} | {_fmt(r.seconds_per_epoch, '.0f')} | {r.backend or '-'} "
            f"| {r.hardware or '-'} |"
        )
    lines += ["", "## What is left, and why", ""] + _left(rows)
    lines += ["", "## Where each run trained", "", *_session_lines(out, rows)]
    lines += [
        "",
        "## Against the thesis (mean and standard deviation over finished seeds)",
        "",
        "| recipe | thesis | seeds finished | PrivateTest final, mean +- sd | ours - thesis "
        "| PrivateTest at best epoch, mean +- sd |",
        "|---|---|---|---|---|---|",
    ]
    gaps = []
    for recipe in RECIPES:
        done = [r for r in rows if r.recipe == recipe and r.status == "finished"]
        final = [r.private_final for r in done]
        best = [r.private_at_best_epoch for r in done]
        thesis = THESIS_PRIVATE[recipe]
        gap = statistics.mean(final) - thesis if final else None
        lines.append(
            f"| {recipe} | {thesis:.2f} | {len(done)} | {_spread(final)} | "
            f"{_fmt(gap, '+.2f')} | {_spread(best)} |"
        )
        if gap is not None and gap < -GAP_TO_EXPLAIN:
            gaps.append(f"{recipe} is {-gap:.2f} points below")
    notes = out / NOTES
    if gaps:
        where = "what it was traced to is below" if notes.exists() else "not looked into yet"
        lines += [
            "",
            f"More than {GAP_TO_EXPLAIN} points below the thesis: {'; '.join(gaps)}; {where}.",
        ]
    ens = _ensembles(out, dataset, seeds)
    lines += ["", "## Top-3 ensemble (softmax mean of the three recipes' final models)", ""]
    if ens:
        lines += ["| seed | members' length | PrivateTest | with flip TTA |", "|---|---|---|---|"]
        lines += [f"| {s} | {n} | {a:.2f} | {t:.2f} |" for s, a, t, n in ens]
    else:
        lines.append("Not run yet: it needs all three recipes finished with the same seed.")
    lines += ["", *_comparison_lines(out, rows, seeds)]
    if notes.exists():
        lines += [
            "",
            f"## Notes on the comparison (hand-written, `{NOTES}`)",
            "",
            notes.read_text().strip(),
        ]
    lines += ["", f"![learning curves]({FIGURE})", ""]
    (out / REPORT).write_text("\n".join(lines))
    return out / REPORT


def _run_predictions(out: Path, row: Row):
    """A finished run's per-image predictions, or None when it has no file yet."""
    path = workdir(out, row.recipe, row.seed) / predictions.FILE
    return predictions.load(path) if path.exists() else None


def _comparison_lines(out: Path, rows: list[Row], seeds) -> list[str]:
    """Paired tests on the same PrivateTest images, from the runs' predictions files: each
    run's final against its best-PublicTest epoch and flip TTA against plain; the recipes
    against each other in the thesis's order; each ensemble against its best member."""
    split = "PrivateTest"
    lines = [
        "## Paired comparisons on the same PrivateTest images",
        "",
        "From each run's `predictions.npz` (per-image predictions of its final and "
        "best-epoch weights, plain and with flip TTA: the mean softmax of the image and "
        "its mirror). " + comparisons.EXPLAIN,
        "",
    ]
    ran = [r for r in rows if r.status == "finished" or r.status.startswith("shortened")]
    scored = {(r.recipe, r.seed): _run_predictions(out, r) for r in ran}
    lines += _within_runs(out, ran, scored, split)
    lines += _between_recipes(ran, scored, split)
    lines += _ensembles_against_members(out, scored, split, seeds)
    return lines


def _within_runs(out: Path, ran: list[Row], scored: dict, split: str) -> list[str]:
    missing = [r for r in ran if scored[(r.recipe, r.seed)] is None]
    lines = [
        "### Within each run: final against best-PublicTest epoch, flip TTA against plain",
        "",
    ]
    pairs = []
    for r in ran:
        found = scored[(r.recipe, r.seed)]
        if found is None:
            continue
        name = f"{r.recipe} seed {r.seed}" + ("" if r.status == "finished" else f" ({r.status})")

        def arm(variant: str, label: str, found=found, name=name) -> Arm:
            return Arm(f"{name}: {label}", found.correct(split, variant))

        pairs += [
            (arm("final", "final"), arm("best", f"best epoch ({r.best_epoch})")),
            (arm("final+tta", "final + flip TTA"), arm("final", "final")),
        ]
    lines += comparisons.table(pairs) if pairs else ["No finished run has predictions yet."]
    for r in missing:
        folder = workdir(out, r.recipe, r.seed)
        lines += [
            "",
            f"- {r.recipe} seed {r.seed}: no {predictions.FILE} yet; "
            f"`python -m fer_sweep predictions backfill {folder}` writes it.",
        ]
    return lines


def _between_recipes(ran: list[Row], scored: dict, split: str) -> list[str]:
    lines = [
        "",
        "### Between recipes: the thesis's order, top-1 > top-2 > top-3",
        "",
        "Final weights (Table 5.7's), every finished full-length seed of each recipe "
        "that has predictions.",
        "",
    ]
    arms = _recipe_arms(ran, scored, split)
    order = [(a, b) for i, a in enumerate(RECIPES) for b in RECIPES[i + 1 :]]
    ready = [(arms[a], arms[b]) for a, b in order if arms[a] is not None and arms[b] is not None]
    if ready:
        lines += comparisons.table(ready)
        done = comparisons.compare_pairs(ready)
        lines += [
            "",
            "The thesis's order on these runs (Holm-adjusted p < "
            f"{comparisons.ALPHA}): "
            + "; ".join(f"{c.a} above {c.b}: {comparisons.verdict(c)}" for c in done)
            + ".",
        ]
    for a, b in order:
        if arms[a] is None or arms[b] is None:
            absent = " and ".join(x for x in (a, b) if arms[x] is None)
            lines += [
                f"- {a} against {b}: not run yet ({absent}: no finished full-length run "
                "with predictions)."
            ]
    return lines


def _recipe_arms(ran: list[Row], scored: dict, split: str) -> dict[str, Arm | None]:
    """Each recipe's finished full-length seeds with predictions, as one arm (None: none)."""
    arms: dict[str, Arm | None] = dict.fromkeys(RECIPES)
    files = [f for f in scored.values() if f is not None]
    for recipe in RECIPES:
        found = [
            scored[(r.recipe, r.seed)] for r in ran if r.recipe == recipe and r.status == "finished"
        ]
        # Paired against one reference file: every seed of every recipe, the same images.
        correct = [
            predictions.paired(files[0], f, split, "final", "final")[1]
            for f in found
            if f is not None
        ]
        if correct:
            arms[recipe] = Arm(recipe, np.stack(correct))
    return arms


def top3_verdict(out: Path, seeds=(0, 1, 2)) -> str:
    """The thesis's order top-1 > top-2 > top-3 on the finished runs, as two Markdown cells:
    the verdict and what it rests on (or the hours the missing runs still need)."""
    rows = reproduction_rows(out, seeds=seeds)
    ran = [r for r in rows if r.status == "finished"]
    scored = {(r.recipe, r.seed): _run_predictions(out, r) for r in ran}
    arms = _recipe_arms(ran, scored, "PrivateTest")
    absent = [r for r in RECIPES if arms[r] is None]
    if absent:
        paces = [r.pace for r in rows if r.pace]
        pace = statistics.median(paces) if paces else None
        need = sum(run_config(r, 0).epochs for r in absent)
        when = f"about {need * pace / 3600:.0f} h at {pace:.0f} s an epoch" if pace else "-"
        return (
            f"not run at the thesis's budget | {', '.join(absent)}: no finished run with "
            f"predictions; one seed each needs {when} (`reproduce`)"
        )
    from fer_sweep.reporting._claims import CONTRADICTED, HOLDS, NOT_SUPPORTED

    order = [(arms[a], arms[b]) for i, a in enumerate(RECIPES) for b in RECIPES[i + 1 :]]
    words = [comparisons.verdict(c) for c in comparisons.compare_pairs(order)]
    seeds_of = ", ".join(f"{r} {arms[r].correct.shape[0]}" for r in RECIPES)
    verdict = (
        CONTRADICTED
        if "contradicted" in words
        else HOLDS
        if all(w == "holds" for w in words)
        else NOT_SUPPORTED
    )
    return f"{verdict} | the reproduction's full-length runs (seeds: {seeds_of})"


def _ensembles_against_members(out: Path, scored: dict, split: str, seeds) -> list[str]:
    lines = [
        "",
        "### Each top-3 ensemble against its best member",
        "",
        "The member with the best PublicTest accuracy (chosen without PrivateTest), final "
        "weights, against the ensemble of the three final models.",
        "",
    ]
    pairs = []
    for seed in seeds:
        ens_path = ensemble_dir(out, seed) / predictions.FILE
        members = [(scored.get((r, seed)), r) for r in RECIPES]
        if not ens_path.exists() or any(m is None for m, _ in members):
            continue
        ens = predictions.load(ens_path)
        best = max(RECIPES, key=lambda r: _result(out, r, seed)["public_best"])
        member, e = predictions.paired(scored[(best, seed)], ens, split, "final", "ensemble")
        e_tta = ens.correct(split, "ensemble+tta")
        pairs += [
            (Arm(f"seed {seed}: ensemble", e), Arm(f"seed {seed}: {best}", member)),
            (Arm(f"seed {seed}: ensemble + flip TTA", e_tta), Arm(f"seed {seed}: ensemble", e)),
        ]
    lines += (
        comparisons.table(pairs)
        if pairs
        else [
            "Not run yet: it needs all three recipes finished with the same seed, with predictions."
        ]
    )
    return lines


def _left(rows: list[Row]) -> list[str]:
    """Each unfinished run with what its own measured pace says it still needs.

    Estimates use the median epoch time of the run's latest session (today's hardware and
    allocator), else of the whole run, else the median of those paces over all runs;
    hardware that trains faster (a GPU: see the README's Backends section) needs less.
    """
    paces = [r.pace for r in rows if r.pace]
    typical = statistics.median(paces) if paces else None
    lines = []
    for r in rows:
        if r.status == "finished":
            continue
        if r.status.startswith("shortened"):
            lines.append(
                f"- {r.recipe} seed {r.seed}: {r.status}, so not compared with the "
                "thesis; a full-length run needs its own folder."
            )
            continue
        left = r.epochs - r.epochs_done
        pace = r.pace or typical
        need = f"about {left * pace / 3600:.1f} h at {pace:.0f} s an epoch" if pace else "-"
        if r.recent_seconds_per_epoch:
            need += " (its latest session's median)"
        where = f" on {r.hardware}" if r.hardware else ""
        verb = "continues" if r.epochs_done else "starts"
        lines.append(
            f"- {r.recipe} seed {r.seed}: {r.status}; {left} epochs left, {need}"
            f"{where}. `reproduce` {verb} it."
        )
    return lines or ["Nothing: every chosen run finished at the thesis's length."]


def _session_lines(out: Path, rows: list[Row]) -> list[str]:
    """Every start and resume of each run with the epochs it completed and their pace, so the
    run's overall median can be read for what it mixes."""
    lines = [
        "One row per start or resume (`work/*/sessions.json`); s / epoch is the median "
        "of that session's epochs, with the fastest and slowest. Sessions recorded "
        "before runs named TensorFlow's allocator say only `tensorflow`.",
        "",
        "| recipe | seed | started (UTC) | epochs | s / epoch | fastest - slowest "
        "| backend | hardware |",
        "|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for r in rows:
        for s in sessions(workdir(out, r.recipe, r.seed)):
            found = True
            if s.seconds:
                done = f"{s.first_epoch}" + (
                    f"-{s.last_epoch}" if s.last_epoch > s.first_epoch else ""
                )
                pace = f"{_median(s.seconds):.0f}"
                spread = f"{min(s.seconds):.0f} - {max(s.seconds):.0f}"
            else:
                done, pace, spread = "none completed", "-", "-"
            started = s.started.replace("T", " ").removesuffix("+00:00")
            lines.append(
                f"| {r.recipe} | {r.seed} | {started} | {done} | {pace} | {spread} "
                f"| {s.backend} | {s.hardware} |"
            )
    return lines if found else ["No run has started yet."]


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} (one seed)"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def _plot_curves(out: Path, rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for r in rows:
        history = _history_of(workdir(out, r.recipe, r.seed))
        if not history:
            continue
        epochs = range(1, len(history["accuracy"]) + 1)
        label = f"{r.recipe} seed {r.seed}"
        axes[0].plot(epochs, history["val_accuracy"], label=label)
        axes[1].plot(epochs, history["accuracy"], label=label)
    for ax, title in zip(axes, ("PublicTest accuracy", "training accuracy"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / FIGURE, dpi=90)
    plt.close(fig)


def _history_of(folder: Path) -> dict | None:
    if (folder / RESULT_FILE).exists():
        return json.loads((folder / RESULT_FILE).read_text())["history"]
    state = checkpoint_state(folder)
    return state["history"] if state and state["epoch"] else None
