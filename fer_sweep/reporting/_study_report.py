"""``report STUDY``: each configuration's accuracy with its interval, and which differences
between configurations the test images support.

It reads every complete trial's per-image predictions (``evaluation/predictions.npz`` of its
MLflow run, :mod:`fer_sweep.training.predictions`), so every number comes from the same images:

- per configuration, PrivateTest and PublicTest accuracy with the final weights and with the
  best-PublicTest epoch's, each with its 95 % interval (:func:`fer_sweep.reporting.stats.accuracy`:
  over the images for one seed, over seeds and images for a configuration trained with
  several, whose every seed's run holds its own predictions);
- between configurations, every pair on PrivateTest (final weights, then the best epoch's),
  paired on the images (and, with several seeds, a bootstrap over seeds and images with
  P(A > B) over seeds), the p-values of each table Holm-adjusted
  (:mod:`fer_sweep.reporting._comparisons`).

The Markdown, a figure of the per-configuration intervals and one of the PublicTest learning
curves (a band over the seeds where there are several) are logged as artifacts of the
study's parent run (``report/``), and its note gains a line that links them.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fer_sweep.errors import UserError, first_line
from fer_sweep.reporting import _comparisons as comparisons
from fer_sweep.reporting import stats
from fer_sweep.reporting._claims import HOLDS, Verdict, claims_of, judge
from fer_sweep.reporting._comparisons import Arm
from fer_sweep.training import predictions

REPORT_DIR = "report"
MARKDOWN = "report.md"
FIGURE = "report-intervals.png"
CURVES = "report-curves.png"
HISTORY = "evaluation/history.json"  # each run's per-epoch metrics (Keras's names)
SCORES = (
    ("PrivateTest", "final"),
    ("PrivateTest", "best"),
    ("PublicTest", "final"),
    ("PublicTest", "best"),
)
WEIGHTS = {"final": "final weights", "best": "best-PublicTest epoch"}


@dataclass
class Configuration:
    """One configuration of the study: its trial, in words, and its accuracies."""

    trial: int
    label: str
    run_id: str
    scores: dict[str, stats.Estimate]  # "SPLIT/WEIGHTS" -> accuracy with its interval
    predictions: predictions.Predictions  # seed 0's
    params: dict = field(default_factory=dict)  # what its sampler chose (arms by their label)
    seeds: list[predictions.Predictions] = field(default_factory=list)  # every seed's
    curves: list[dict] = field(default_factory=list)  # every seed's history.json

    def correct(self, split: str, weights: str):
        """Per-image correctness, ``(seeds, images)``: one row per seed."""
        import numpy as np

        return np.stack([p.correct(split, weights) for p in self.seeds or [self.predictions]])


@dataclass
class StudyReport:
    study: str
    budget: str
    configurations: list[Configuration]
    comparisons: dict[str, list[stats.Comparison]]  # "PrivateTest/final" -> pairs
    verdicts: list[Verdict] = field(default_factory=list)  # the claims it tests

    def to_json(self) -> str:
        return json.dumps(
            {
                "study": self.study,
                "budget": self.budget,
                "configurations": [
                    {
                        "trial": c.trial,
                        "label": c.label,
                        "run_id": c.run_id,
                        "accuracy": {k: asdict(e) for k, e in c.scores.items()},
                    }
                    for c in self.configurations
                ],
                "comparisons": {k: [asdict(c) for c in v] for k, v in self.comparisons.items()},
                "claims": [
                    {
                        "section": v.claim.section,
                        "quote": v.claim.quote,
                        "verdict": v.verdict,
                        "rests_on": v.why,
                        "comparisons": [asdict(c) for c in v.comparisons],
                    }
                    for v in self.verdicts
                ],
            },
            indent=2,
        )

    def to_markdown(self) -> str:
        lines = [
            f"# Study {self.study}: which differences the test images support",
            "",
            f"Budget `{self.budget}`; {len(self.configurations)} complete trial(s), "
            f"{seeds_words(self.configurations)}; accuracies in percent with their 95 % "
            "interval (Wilson over the images for one seed; a bootstrap over seeds and "
            "images for several: the mean over the seeds), from each run's per-image "
            "predictions.",
            "",
            "| trial | configuration | "
            + " | ".join(f"{s}, {WEIGHTS[w]}" for s, w in SCORES)
            + " |",
            "|---|---|" + "---|" * len(SCORES),
        ]
        for c in self.configurations:
            cells = " | ".join(comparisons.interval(c.scores[f"{s}/{w}"]) for s, w in SCORES)
            lines.append(f"| {c.trial} | {c.label} | {cells} |")
        for key, done in self.comparisons.items():
            split, weights = key.split("/")
            lines += ["", f"## Between configurations: {split}, {WEIGHTS[weights]}", ""]
            if not done:
                lines.append("One configuration only: nothing to compare.")
                continue
            lines += [comparisons.EXPLAIN, "", comparisons.HEAD, comparisons.RULE]
            by_label = {c.label: c for c in self.configurations}
            for c in done:
                lines.append(
                    comparisons.row(c, by_label[c.a].scores[key], by_label[c.b].scores[key])
                )
        lines += ["", *verdict_lines(self.verdicts)]
        lines += ["", f"![intervals]({FIGURE})", "", f"![curves]({CURVES})", ""]
        return "\n".join(lines)


def seeds_words(configurations) -> str:
    """``one seed each`` / ``2 seeds each`` / ``1 to 3 seeds each``."""
    counts = sorted({len(c.seeds) or 1 for c in configurations})
    if counts == [1]:
        return "one seed each"
    many = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"{many} seeds each"


def verdict_lines(verdicts: list[Verdict]) -> list[str]:
    """The thesis's conclusions a study tests, each with its verdict and what it rests on."""
    lines = ["## The thesis's conclusions this study tests", ""]
    if not verdicts:
        return [*lines, "None of the thesis's conclusions in `fer_sweep/reporting/_claims.py`."]
    lines += [
        f"PrivateTest, final weights; {HOLDS!r} needs every pair above in the "
        f"claimed direction at Holm-adjusted p < {comparisons.ALPHA}.",
        "",
        "| section | the thesis says | verdict | effects, points (95 % CI) | rests on |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts:
        effects = (
            "; ".join(
                f"{c.a} - {c.b}: {comparisons.interval(c.difference, signed=True)}"
                for c in v.comparisons
            )
            or "-"
        )
        lines.append(f"| {v.claim.section} | {v.claim.quote} | {v.verdict} | {effects} | {v.why} |")
    return lines


@dataclass
class Finished:
    """A study's complete trials: ranked rows, each trial's sampled params, its sweep."""

    rows: list
    params: dict[int, dict]
    sweep: str


def finished_trials(storage, study: str) -> Finished:
    """The complete trials of ``study`` (:class:`._ranking.Ranked` rows); an unknown
    study or one without a complete trial is a :class:`UserError`. Light: nothing here loads
    MLflow or Keras, so a bad study name is one line at once."""
    import optuna

    from fer_sweep.lifecycle import plan_of
    from fer_sweep.reporting._ranking import rank_trials

    rows = rank_trials(storage, study=study, top=10**9).groups[0].rows
    if not rows:
        raise UserError(f"study {study} has no finished trial to report on")
    loaded = optuna.load_study(study_name=study, storage=storage)
    params = {t.number: dict(t.params) for t in loaded.get_trials(deepcopy=False)}
    return Finished(rows, params, plan_of(loaded).spec.name)


def build_study_report(client, finished: Finished, study: str) -> StudyReport:
    """The report of ``study`` from its complete trials' logged predictions (every seed's)."""
    rows = finished.rows
    configs: list[Configuration] = []
    with tempfile.TemporaryDirectory(prefix="fer-sweep-report-") as tmp:
        for r in sorted(rows, key=lambda r: r.trial):
            runs = r.seed_runs or [r.run_id]
            found = [
                _trial_predictions(client, r, Path(tmp), run, k if r.seed_runs else None)
                for k, run in enumerate(runs)
            ]
            first = configs[0].predictions if configs else found[0]
            for p in found:  # every seed against the first trial's: the same images, else
                for split, weights in SCORES:  # no pairing is valid
                    predictions.paired(first, p, split, weights, weights)
            label = f"t{r.trial:02d} {r.params}" if r.params else f"t{r.trial:02d}"
            config = Configuration(
                r.trial,
                label,
                r.run_id,
                {},
                found[0],
                finished.params.get(r.trial, {}),
                found,
                [_history(client, run, Path(tmp)) for run in runs],
            )
            config.scores = {
                f"{split}/{weights}": stats.accuracy(config.correct(split, weights))
                for split, weights in SCORES
            }
            configs.append(config)
    done = {}
    for key in ("PrivateTest/final", "PrivateTest/best"):
        split, weights = key.split("/")
        arms = [Arm(c.label, c.correct(split, weights)) for c in configs]
        pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1 :]]
        done[key] = comparisons.compare_pairs(pairs)
    epochs, subset = min(r.epochs for r in rows), max(r.subset for r in rows)
    verdicts = [
        judge(c, configs, budget=rows[0].budget, epochs=epochs, subset=subset)
        for c in claims_of(finished.sweep)
    ]
    return StudyReport(study, rows[0].budget, configs, done, verdicts)


def _history(client, run_id: str, tmp: Path) -> dict:
    """A run's per-epoch metrics; empty when it has none (the curves then leave it out)."""
    try:
        local = client.download_artifacts(run_id, HISTORY, str(tmp / f"history-{run_id}"))
        return json.loads(Path(local).read_text())
    except Exception:  # noqa: BLE001 - a figure's curve, never a reason to fail the report
        return {}


def _trial_predictions(
    client, row, tmp: Path, run_id: str, seed: int | None = None
) -> predictions.Predictions:
    """The predictions logged by ``run_id``: the trial's run, or its ``seed``'s."""
    whose = f"trial {row.trial}" + ("" if seed is None else f" seed {seed}")
    if not run_id:
        raise UserError(f"trial {row.trial} of study {row.study} has no MLflow run")
    try:
        local = client.download_artifacts(run_id, predictions.ARTIFACT, str(tmp / run_id))
    except Exception as err:  # noqa: BLE001 - MLflow raises its own types
        raise UserError(
            f"{whose} of study {row.study}: no {predictions.ARTIFACT} in "
            f"MLflow run {run_id} (a trial finished before trials stored "
            f"their predictions; {first_line(err)})"
        ) from None
    found = predictions.load(local)
    found.source = f"{whose}'s {predictions.ARTIFACT}"
    return found


def plot_intervals(report: StudyReport, path: Path) -> Path:
    """Each configuration's PrivateTest accuracy (final and best epoch) with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = report.configurations
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(configs)))
    for k, (weights, offset) in enumerate((("final", -0.12), ("best", 0.12))):
        est = [c.scores[f"PrivateTest/{weights}"] for c in configs]
        y = [i + offset for i in range(len(configs))]
        x = [100 * e.value for e in est]
        err = [[100 * (e.value - e.low) for e in est], [100 * (e.high - e.value) for e in est]]
        ax.errorbar(
            x,
            y,
            xerr=err,
            fmt="o",
            capsize=3,
            color=f"C{k}",
            label=f"PrivateTest, {WEIGHTS[weights]}",
        )
    ax.set_yticks(range(len(configs)), [c.label for c in configs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy, % (95 % interval)")
    ax.set_title(f"study {report.study}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_curves(report: StudyReport, path: Path) -> Path:
    """Each configuration's PublicTest accuracy per epoch: the mean over its seeds, with a
    band from the lowest to the highest seed where it has several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, c in enumerate(report.configurations):
        runs = [h["val_accuracy"] for h in c.curves if h.get("val_accuracy")]
        if not runs:
            continue
        n = min(len(r) for r in runs)  # a pruned seed cannot happen (seed 0 only is pruned)
        acc = 100 * np.array([r[:n] for r in runs])
        epochs = np.arange(1, n + 1)
        ax.plot(epochs, acc.mean(axis=0), color=f"C{i % 10}", label=c.label)
        if len(runs) > 1:
            ax.fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color=f"C{i % 10}", alpha=0.2)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole epochs
    ax.set_xlabel("epoch")
    ax.set_ylabel("PublicTest accuracy, %")
    ax.set_title(f"study {report.study}: mean over seeds, band from lowest to highest")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def log_study_report(client, study, report: StudyReport) -> str:
    """Log the Markdown and the figure under ``report/`` of the study's parent run and link
    them from its note; returns the run's id."""
    from fer_sweep.tracking import NOTE, STUDY_RUN_ATTR

    run_id = study.user_attrs.get(STUDY_RUN_ATTR)
    if not run_id:
        raise UserError(f"study {report.study} has no MLflow run to log its report to")
    with tempfile.TemporaryDirectory(prefix="fer-sweep-report-") as tmp:
        (Path(tmp) / MARKDOWN).write_text(report.to_markdown())
        plot_intervals(report, Path(tmp) / FIGURE)
        plot_curves(report, Path(tmp) / CURVES)
        client.log_artifacts(run_id, tmp, REPORT_DIR)
    note = client.get_run(run_id).data.tags.get(NOTE, "")
    link = (
        f"- Paired comparisons of the {len(report.configurations)} trials: artifacts "
        f"`{REPORT_DIR}/{MARKDOWN}`, `{REPORT_DIR}/{FIGURE}` and `{REPORT_DIR}/{CURVES}` "
        f"(`python -m fer_sweep report {report.study}`)"
    )
    kept = [line for line in note.splitlines() if not line.startswith("- Paired comparisons")]
    client.set_tag(run_id, NOTE, "\n".join([*kept, link]))
    return run_id
