"""What a person reads in the MLflow UI: names, notes, tags, the dataset input, the saved view.

Everything here is a pure function of a study's definition and a trial's outcome, so that the
orchestration code only has to hand the results to MLflow. MLflow 3's UI is driven by a few
reserved names: ``mlflow.note.content`` (markdown notes of experiments and runs),
``mlflow.experimentKind`` (the experiment's kind in MLflow's kind selector; MLflow 3.17's UI
opens an experiment on its runs or its GenAI pages by the browser's workflow type instead,
see ``fer_sweep/ui_app.py``), ``mlflow.source.*`` (the Source column) and
``mlflow.sharedViewState.<id>`` (a saved view of the runs table: columns, sort order, expanded
rows; listed under "Views").
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag

from fer_sweep import metric_names as mn
from fer_sweep import thesis
from fer_sweep.data import EMOTIONS, SPLITS, Dataset
from fer_sweep.space import SweepSpec, choice_text, choices_text
from fer_sweep.thesis import TOP3

NOTE = "mlflow.note.content"
EXPERIMENT_KIND = "mlflow.experimentKind"
# "Custom model development" (a model-training experiment). MLflow 3.17's UI does not open
# the experiment on its runs for it: fer_sweep/ui_app.py.
MODEL_TRAINING_KIND = "custom_model_development"
SAVED_VIEW_PREFIX = "mlflow.sharedViewState."
SAVED_VIEW_ID = "fer-sweep"
SAVED_VIEW_NAME = "fer-sweep: trials by PublicTest"
# Marks a saved view as ours: MLflow's UI rewrites the envelope without it when a user
# overrides the view, and then fer_sweep leaves it alone.
WRITTEN_BY = "fer_sweep"
CHOICE_TAG_PREFIX = "choice."
# The runs table's search filter: a trial's run has the trial's number as a tag (attempt.py),
# the study's run (the parent) has none.
TRIALS_ONLY = "tags.`optuna.trial` IS NOT NULL"
# MLflow refuses dataset digests longer than 36 characters (mlflow.utils.validation), so the
# digest is the start of the source's sha256; the whole hash is in the profile and a run tag.
DIGEST_CHARS = 16

# What each logged number means, for the experiment's description. Keyed by metric name.
METRIC_MEANINGS: dict[str, str] = {
    mn.TRAIN_LOSS: "Training split, each epoch: cross-entropy on the augmented batches",
    mn.TRAIN_ACCURACY: "Training split, each epoch: accuracy on the augmented batches",
    mn.LEARNING_RATE: "the optimizer's learning rate at the end of each epoch",
    mn.EPOCH_SECONDS: "wall-clock seconds of each epoch, its PublicTest pass included",
    mn.PUBLIC_LOSS: "PublicTest (validation), each epoch: cross-entropy",
    mn.PUBLIC_ACCURACY: "PublicTest (validation), each epoch: accuracy; selects epochs and trials",
    mn.PUBLIC_BEST: "the best epoch's PublicTest accuracy: the sweep's objective",
    mn.PUBLIC_FINAL: "the final epoch's PublicTest accuracy",
    mn.PRIVATE_FINAL: "PrivateTest (test) accuracy of the final weights: what the thesis's "
    "Table 5.7 reports",
    mn.PRIVATE_AT_BEST: "PrivateTest accuracy of the best-PublicTest epoch's weights: what "
    "`fer_sweep best` shows",
    mn.TRAIN_BEST: "the best epoch's training accuracy (what Section 5.3.4 compares)",
    mn.PRIVATE_AT_EPOCH: "PrivateTest accuracy after the epochs a sweep names (report_epochs), "
    "for the report only",
    mn.BEST_EPOCH: "the epoch with the best PublicTest accuracy (1-based)",
    mn.EPOCHS_TRAINED: "epochs the run trained (fewer when pruned or stopped)",
    mn.FIT_SECONDS: "wall-clock seconds of training (this attempt's epochs)",
    mn.EVAL_SECONDS: "wall-clock seconds of the PrivateTest evaluations",
}


def percent(fraction: float) -> str:
    """A 0-1 accuracy as the thesis writes it: percent with two decimals."""
    return f"{100.0 * fraction:.2f} %"


# --- the dataset and the code behind a run -------------------------------------------------


def dataset_input(dataset: Dataset, context: str = "training") -> DatasetInput:
    """The dataset as an MLflow input: name, digest, where it was read from, split sizes."""
    counts = dataset.counts()
    profile = {
        "sha256": dataset.sha256,
        "rows": {split: int(sum(counts[split])) for split in SPLITS},
        "rows_per_class": counts,
    }
    entity = MlflowDataset(
        name=Path(dataset.source).name,
        digest=dataset.sha256[:DIGEST_CHARS],
        source_type="local",
        source=json.dumps({"uri": Path(dataset.source).as_uri()}),
        profile=json.dumps(profile),
    )
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])


def sweep_command(sweep_name: str, budget_name: str | None) -> str:
    """The command that runs (or resumes) a study: what its runs' Source column shows."""
    budget = f" --budget {budget_name}" if budget_name else ""
    return f"fer_sweep sweep {sweep_name}{budget}"


def source_tags(command: str) -> dict[str, str]:
    """The Source column: the fer_sweep command that made (and remakes) the run."""
    return {"mlflow.source.type": "LOCAL", "mlflow.source.name": command}


# --- a trial: its name, its choices, its note ----------------------------------------------


def trial_run_name(number: int, choices: dict[str, Any]) -> str:
    """``t04 dropout=0.8 FC only``: the trial number and what its sampler chose."""
    return f"t{number:02d} {choices_text(choices)}".rstrip()


def choice_tags(choices: dict[str, Any]) -> dict[str, str]:
    """One tag per sampled choice (named arms by their label), for columns and legends."""
    return {f"{CHOICE_TAG_PREFIX}{name}": choice_text(value) for name, value in choices.items()}


def study_summary(study_name: str, best, complete: int, config=None) -> str:
    """The study run's note: its best trial (by the objective), in percent, against the
    thesis only where :func:`fer_sweep.thesis.comparable` allows it.

    ``best`` is the best complete Optuna trial; its user attributes hold the split-named
    results (:mod:`fer_sweep.metric_names`); ``config`` is the config it trained (None:
    unknown, so not comparable). The first line says whether it is comparable.
    """
    attrs = best.user_attrs
    chosen = trial_run_name(best.number, best.params)
    epochs = int(attrs.get(mn.EPOCHS_TRAINED, 0))
    ref, why_not = (
        (None, "its config is unknown") if config is None else thesis.comparable(config, epochs)
    )
    final = attrs.get(mn.PRIVATE_FINAL)
    if ref is not None and final is not None:
        gap = 100.0 * final - ref.private_accuracy
        head = f"Best: {percent(final)} vs thesis {ref.private_accuracy:.2f} % ({gap:+.2f})"
    else:
        head = "Best trial: not comparable with the thesis"
    lines = [head, "", f"Best of {complete} complete trial(s) by PublicTest: {chosen}", ""]
    if ref is None:
        lines.append(f"- Not comparable with the thesis: {why_not}.")
    if mn.PUBLIC_BEST in attrs:
        lines.append(f"- PublicTest, best epoch: {percent(attrs[mn.PUBLIC_BEST])}")
    if mn.PRIVATE_FINAL in attrs:
        lines.append(f"- PrivateTest, final weights: {percent(attrs[mn.PRIVATE_FINAL])}")
    if mn.PRIVATE_AT_BEST in attrs:
        lines.append(f"- PrivateTest, best epoch's weights: {percent(attrs[mn.PRIVATE_AT_BEST])}")
    top = ", ".join(f"{r.private_accuracy:.2f} %" for r in TOP3)
    lines.append(f"- The thesis's top 3 (PrivateTest, final weights): {top}")
    return "\n".join(lines)


def _rank_word(rank: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}[rank]


def trial_note(
    config,
    *,
    private_final: float,
    private_at_best: float,
    best_epoch: int,
    epochs_trained: int,
) -> str:
    """A trial's note: its PrivateTest accuracy, against the thesis's only where
    :func:`fer_sweep.thesis.comparable` allows it (as ``best`` does).

    The first line is what the runs table's Description column shows (its first 50
    characters), so it says "not comparable" there when the trial is not.
    """
    ref, why_not = thesis.comparable(config, epochs_trained)
    trained = f"{config.subset} images per split" if config.subset else "all images"
    if ref is not None:
        gap = 100.0 * private_final - ref.private_accuracy
        first = (
            f"PrivateTest {percent(private_final)} vs thesis {ref.private_accuracy:.2f} % "
            f"({gap:+.2f})"
        )
        against = (
            f"the thesis's (its {_rank_word(ref.rank)} model, same recipe, same length): "
            f"{ref.private_accuracy:.2f} %, {gap:+.2f} points."
        )
    else:
        first = f"PrivateTest {percent(private_final)} (not comparable with thesis)"
        same = thesis.reference(config)
        against = f"not comparable with the thesis ({why_not})" + (
            f"; its {_rank_word(same.rank)} model, same recipe, reached "
            f"{same.private_accuracy:.2f} % after {same.epochs} epochs on all 28,709 training "
            "images."
            if same
            else "."
        )
    lines = [
        first,  # at most 50 characters: what the runs table's Description column shows
        "",
        f"- PrivateTest with the final weights: {percent(private_final)}; {against}",
        f"- With the best-PublicTest epoch's weights (epoch {best_epoch} of {epochs_trained}): "
        f"{percent(private_at_best)}.",
        f"- This trial trained {epochs_trained} epochs on {trained}.",
    ]
    if thesis.reference(config) is None:
        lines.append(
            "- The thesis's top 3: "
            + ", ".join(f"{r.private_accuracy:.2f} % ({r.dropout}, {r.epochs} ep)" for r in TOP3)
        )
    return "\n".join(lines)


# --- the study: its experiment's description and saved view -------------------------------


def study_note(spec: SweepSpec, budget_name: str) -> str:
    """The experiment's description: the question, the thesis's finding, and the metrics."""
    budget = spec.budget(budget_name)
    size = f"{budget.subset} images per split" if budget.subset else "all images"
    length = f"{budget.epochs} epochs" if budget.epochs else "the thesis's epochs"
    objective = mn.objective(spec.objective_at)
    top = ", ".join(f"{r.private_accuracy:.2f} %" for r in TOP3)
    rows = "\n".join(f"| `{name}` | {meaning} |" for name, meaning in METRIC_MEANINGS.items())
    return "\n".join(
        [
            # Plain text: MLflow's experiments list shows the start of the note unrendered.
            f"{spec.name} ({budget_name}: {size}, {length}): {_headline(spec.description)}",
            "",
            f"Trials are ranked by `{objective}`; PrivateTest never selects anything.",
            "",
            "**What the study asks, and what the thesis found**",
            "",
            spec.description.strip() or "(the sweep file has no description)",
            "",
            f"The thesis's top 3 reach {top} PrivateTest accuracy (Tables 5.6-5.7, one run "
            "each: differences under about a point are noise). Each trial's note compares "
            "its PrivateTest accuracy with them, in percent.",
            "",
            "**Runs**: the parent run is the study; each child run is one trial, named by "
            "its number and what the sampler chose (`t04 dropout=0.8 FC only`), with every "
            f"choice as a `{CHOICE_TAG_PREFIX}NAME` tag and the whole config as params.",
            "",
            "**Metrics** (accuracies are fractions 0-1; their `_pct` twins and the notes give "
            "percent)",
            "",
            "| metric | meaning |",
            "|---|---|",
            rows,
            f"| `{mn.percent_name(mn.PUBLIC_BEST)}`, ... | the same accuracy in percent, two "
            "decimals, for each once-per-run accuracy above: what the runs table shows |",
            f"| `{mn.per_class('final', 'happy')}`, ... | PrivateTest accuracy per class "
            "(final weights; `at_best_epoch/...` for the best epoch's) |",
        ]
    )


def _headline(description: str) -> str:
    """The sweep file's first sentence (``Thesis 5.3.7, dropout rates``), on one line."""
    text = " ".join(description.split())
    first = re.split(r"(?<=[.?!]) ", text, maxsplit=1)[0]  # "5.3.7" has no space after a dot
    return first.removesuffix(".") or "(the sweep file has no description)"


def _key(kind: str, name: str) -> str:
    """A column's id in MLflow's runs table (its "canonical sort key")."""
    return f"{kind}.`{name}`"


# The chart view, section by section: PublicTest (what selects) first, then PrivateTest (what
# the thesis reports), the training curves, and the per-class numbers folded away. Per-epoch
# metrics are line charts; once-per-run numbers (logged at step 0) bars comparing the trials.
_CHART_SECTIONS: tuple[tuple[str, bool, tuple[tuple[str, str], ...]], ...] = (
    (
        "PublicTest",
        True,
        (
            ("LINE", mn.PUBLIC_ACCURACY),
            ("BAR", mn.PUBLIC_BEST),
            ("LINE", mn.PUBLIC_LOSS),
            ("BAR", mn.PUBLIC_FINAL),
        ),
    ),
    (
        "PrivateTest",
        True,
        (("BAR", mn.PRIVATE_FINAL), ("BAR", mn.PRIVATE_AT_BEST), ("LINE", mn.PRIVATE_AT_EPOCH)),
    ),
    (
        "train",
        True,
        (
            ("LINE", mn.TRAIN_ACCURACY),
            ("LINE", mn.TRAIN_LOSS),
            ("LINE", mn.LEARNING_RATE),
            ("BAR", mn.TRAIN_BEST),
            ("LINE", mn.EPOCH_SECONDS),
        ),
    ),
    *(
        (
            f"PrivateTest_per_class/{which}",
            False,
            tuple(("BAR", mn.per_class(which, e)) for e in EMOTIONS),
        )
        for which in ("final", "at_best_epoch")
    ),
    (
        "Model metrics",
        False,
        tuple(
            ("BAR", m) for m in (mn.BEST_EPOCH, mn.EPOCHS_TRAINED, mn.FIT_SECONDS, mn.EVAL_SECONDS)
        ),
    ),
    ("System metrics", False, ()),
)


def _charts() -> tuple[list[dict], list[dict]]:
    """MLflow's chart cards and sections (its ``compareRunCharts`` / ``compareRunSections``).

    Metrics not listed here (a sweep's own) are added by the UI at the end of their section.
    A once-per-run accuracy is a bar of its percent twin; its fraction's card is there but
    deleted, which keeps the UI from adding it back as a second bar of the same number.
    """
    charts, sections = [], []
    for i, (name, shown, cards) in enumerate(_CHART_SECTIONS):
        section = f"fer-sweep-section-{i}"
        sections.append(
            {
                "uuid": section,
                "name": name,
                "display": shown,
                "isReordered": True,
                "deleted": False,
                "isGenerated": True,
            }
        )
        for kind, metric in cards:
            twin = kind == "BAR" and metric in mn.PERCENT_TWINS
            keys = [(mn.percent_name(metric), False), (metric, True)] if twin else [(metric, False)]
            for key, deleted in keys:
                card = {
                    "uuid": f"fer-sweep-chart-{len(charts)}",
                    "type": kind,
                    "metricKey": key,
                    "metricSectionId": section,
                    "runsCountToCompare": 10,
                    "deleted": deleted,
                    "isGenerated": True,
                }
                if kind == "LINE":
                    card.update(
                        selectedMetricKeys=[key],
                        lineSmoothness=0,
                        scaleType="linear",
                        xAxisScaleType="linear",
                        xAxisKey="step",
                        selectedXAxisMetricKey="",
                        useGlobalXaxisKey=True,
                        useGlobalLineSmoothing=True,
                    )
                charts.append(card)
    return charts, sections


def saved_view(spec: SweepSpec, parent_run_id: str, now_ms: int | None = None) -> tuple[str, str]:
    """(tag key, tag value) of the runs view this study opens with.

    The table: the trials only (:data:`TRIALS_ONLY`), sorted by the objective, best first, with
    each choice, the trial's note and the objective and PrivateTest (both weights) in percent;
    the study's row expanded once the filter is cleared. The charts:
    see ``_CHART_SECTIONS``.
    """
    objective = mn.objective(spec.objective_at)
    choices = [_key("tags", CHOICE_TAG_PREFIX + name) for name in spec.params]
    run_name, note = _key("attributes", "Run Name"), _key("attributes", "Description")
    numbers = [
        _key("metrics", mn.percent_name(m))
        for m in (objective, mn.PRIVATE_FINAL, mn.PRIVATE_AT_BEST)
    ]
    charts, sections = _charts()
    state = {
        # Search facets: the runs that are shown and their order. Trials only: the study's
        # run carries its best trial's numbers, a duplicate row and bar beside that trial.
        "searchFilter": TRIALS_ONLY,
        "orderByKey": _key("metrics", objective),
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        # UI state: the columns (in this order), the expanded study row, the charts.
        "selectedColumns": [*choices, note, *numbers],
        "columnOrder": [run_name, *choices, note, *numbers],
        "columnWidths": {
            run_name: 260,
            note: 380,
            **dict.fromkeys(choices, 190),
            **dict.fromkeys(numbers, 250),
        },
        "runsExpanded": {parent_run_id: True},
        "compareRunCharts": charts,
        "compareRunSections": sections,
        "isAccordionReordered": True,
    }
    now = int(time.time() * 1000) if now_ms is None else now_ms
    envelope = {
        "name": SAVED_VIEW_NAME,
        "createdAt": now,
        "updatedAt": now,
        "state": json.dumps(state),
        "writtenBy": WRITTEN_BY,
    }
    return SAVED_VIEW_PREFIX + SAVED_VIEW_ID, json.dumps(envelope)


def ours(view_value: str) -> bool:
    """Whether a saved view is still the one fer_sweep wrote (not changed in the UI since)."""
    try:
        return json.loads(view_value).get("writtenBy") == WRITTEN_BY
    except (ValueError, AttributeError):
        return False


def runs_url(base: str, experiment_id: str) -> str:
    """The link to a study's runs in model-training mode, with the study's saved view."""
    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={SAVED_VIEW_ID}"
    )


def studies(client) -> list[tuple[str, str]]:
    """(experiment name, experiment id) of every fer_sweep study (an experiment with our
    saved view), by name."""
    key = SAVED_VIEW_PREFIX + SAVED_VIEW_ID
    return [
        (exp.name, exp.experiment_id)
        for exp in client.search_experiments(order_by=["name ASC"])
        if key in exp.tags
    ]


def experiment_tags(spec: SweepSpec, budget_name: str, parent_run_id: str) -> dict[str, str]:
    """The tags that make a study's experiment open on its runs, described and arranged."""
    key, value = saved_view(spec, parent_run_id)
    return {
        NOTE: study_note(spec, budget_name),
        EXPERIMENT_KIND: MODEL_TRAINING_KIND,
        key: value,
    }


def describe_study(client, spec: SweepSpec, budget_name: str, parent_run_id: str) -> str:
    """Give a study's experiment its description, kind and saved view; returns its id.

    The description follows the sweep file (``spec`` at ``budget_name``, as the study's plan
    holds them); a saved view the user has since overridden in the UI (same id) is left alone.
    """
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    known = client.get_experiment(experiment_id).tags
    for key, value in experiment_tags(spec, budget_name, parent_run_id).items():
        if key.startswith(SAVED_VIEW_PREFIX) and key in known and not ours(known[key]):
            continue
        if known.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)
    return experiment_id
