"""``report STUDY``: each configuration's accuracy with its interval, and which differences
between configurations the test images support.

It reads every complete trial's per-image predictions (``evaluation/predictions.npz`` of its
MLflow run, :mod:`fer_sweep.predictions`), so every number comes from the same images:

- per configuration, PrivateTest and PublicTest accuracy with the final weights and with the
  best-PublicTest epoch's, each with its 95 % interval (:func:`fer_sweep.stats.accuracy`);
- between configurations, every pair on PrivateTest (final weights, then the best epoch's),
  paired on the images, the p-values of each table Holm-adjusted
  (:mod:`fer_sweep.comparisons`).

The Markdown and a figure of the per-configuration intervals are logged as artifacts of the
study's parent run (``report/``), and its note gains a line that links them.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fer_sweep import claims, comparisons, predictions, stats
from fer_sweep.comparisons import Arm
from fer_sweep.errors import UserError, first_line

REPORT_DIR = "report"
MARKDOWN = "report.md"
FIGURE = "report-intervals.png"
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
    predictions: predictions.Predictions
    params: dict = field(default_factory=dict)  # what its sampler chose (arms by their label)


@dataclass
class StudyReport:
    study: str
    budget: str
    configurations: list[Configuration]
    comparisons: dict[str, list[stats.Comparison]]  # "PrivateTest/final" -> pairs
    verdicts: list[claims.Verdict] = field(default_factory=list)  # the claims it tests

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
            f"Budget `{self.budget}`; {len(self.configurations)} complete trial(s), one seed "
            "each; accuracies in percent with their 95 % interval (Wilson over the images), "
            "from each trial's per-image predictions.",
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
        lines += ["", f"![intervals]({FIGURE})", ""]
        return "\n".join(lines)


def verdict_lines(verdicts: list[claims.Verdict]) -> list[str]:
    """The thesis's conclusions a study tests, each with its verdict and what it rests on."""
    lines = ["## The thesis's conclusions this study tests", ""]
    if not verdicts:
        return [*lines, "None of the thesis's conclusions in `fer_sweep/claims.py`."]
    lines += [
        f"PrivateTest, final weights; {claims.HOLDS!r} needs every pair above in the "
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
    """The complete trials of ``study`` (:class:`fer_sweep.ranking.Ranked` rows); an unknown
    study or one without a complete trial is a :class:`UserError`. Light: nothing here loads
    MLflow or Keras, so a bad study name is one line at once."""
    import optuna

    from fer_sweep.ranking import rank_trials
    from fer_sweep.study import plan_of

    rows = rank_trials(storage, study=study, top=10**9).groups[0].rows
    if not rows:
        raise UserError(f"study {study} has no finished trial to report on")
    loaded = optuna.load_study(study_name=study, storage=storage)
    params = {t.number: dict(t.params) for t in loaded.get_trials(deepcopy=False)}
    return Finished(rows, params, plan_of(loaded).spec.name)


def build(client, finished: Finished, study: str) -> StudyReport:
    """The report of ``study`` from its complete trials' logged predictions."""
    rows = finished.rows
    configs = []
    with tempfile.TemporaryDirectory(prefix="fer-sweep-report-") as tmp:
        for r in sorted(rows, key=lambda r: r.trial):
            found = _trial_predictions(client, r, Path(tmp))
            label = f"t{r.trial:02d} {r.params}" if r.params else f"t{r.trial:02d}"
            scores = {}
            for split, weights in SCORES:
                # Every trial against the first: the same images, else no pairing is valid.
                correct = predictions.paired(
                    configs[0].predictions if configs else found, found, split, weights, weights
                )[1]
                scores[f"{split}/{weights}"] = stats.accuracy(correct)
            configs.append(
                Configuration(
                    r.trial, label, r.run_id, scores, found, finished.params.get(r.trial, {})
                )
            )
    done = {}
    for key in ("PrivateTest/final", "PrivateTest/best"):
        split, weights = key.split("/")
        arms = [Arm(c.label, c.predictions.correct(split, weights)) for c in configs]
        pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1 :]]
        done[key] = comparisons.compare_pairs(pairs)
    epochs, subset = min(r.epochs for r in rows), max(r.subset for r in rows)
    verdicts = [
        claims.judge(c, configs, budget=rows[0].budget, epochs=epochs, subset=subset)
        for c in claims.claims_of(finished.sweep)
    ]
    return StudyReport(study, rows[0].budget, configs, done, verdicts)


def _trial_predictions(client, row, tmp: Path) -> predictions.Predictions:
    if not row.run_id:
        raise UserError(f"trial {row.trial} of study {row.study} has no MLflow run")
    try:
        local = client.download_artifacts(row.run_id, predictions.ARTIFACT, str(tmp / row.run_id))
    except Exception as err:  # noqa: BLE001 - MLflow raises its own types
        raise UserError(
            f"trial {row.trial} of study {row.study}: no {predictions.ARTIFACT} in "
            f"MLflow run {row.run_id} (a trial finished before trials stored "
            f"their predictions; {first_line(err)})"
        ) from None
    found = predictions.load(local)
    found.source = f"trial {row.trial}'s {predictions.ARTIFACT}"
    return found


def plot(report: StudyReport, path: Path) -> Path:
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


def log(client, study, report: StudyReport) -> str:
    """Log the Markdown and the figure under ``report/`` of the study's parent run and link
    them from its note; returns the run's id."""
    from fer_sweep.describe import NOTE
    from fer_sweep.runs import STUDY_RUN_ATTR

    run_id = study.user_attrs.get(STUDY_RUN_ATTR)
    if not run_id:
        raise UserError(f"study {report.study} has no MLflow run to log its report to")
    with tempfile.TemporaryDirectory(prefix="fer-sweep-report-") as tmp:
        (Path(tmp) / MARKDOWN).write_text(report.to_markdown())
        plot(report, Path(tmp) / FIGURE)
        client.log_artifacts(run_id, tmp, REPORT_DIR)
    note = client.get_run(run_id).data.tags.get(NOTE, "")
    link = (
        f"- Paired comparisons of the {len(report.configurations)} trials: artifacts "
        f"`{REPORT_DIR}/{MARKDOWN}` and `{REPORT_DIR}/{FIGURE}` "
        f"(`python -m fer_sweep report {report.study}`)"
    )
    kept = [line for line in note.splitlines() if not line.startswith("- Paired comparisons")]
    client.set_tag(run_id, NOTE, "\n".join([*kept, link]))
    return run_id
