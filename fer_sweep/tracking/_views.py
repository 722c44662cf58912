"""A study's experiment in MLflow's UI: its kind, description and saved view of the runs.

MLflow 3's UI is driven by a few reserved names: ``mlflow.experimentKind`` (the experiment's
kind; MLflow 3.17's UI opens an experiment on its runs or its GenAI pages by the browser's
workflow type instead, see :mod:`fer_sweep.tracking._ui_app`) and
``mlflow.sharedViewState.<id>`` (a saved view of the runs table: columns, sort order,
expanded rows; listed under "Views").
"""

from __future__ import annotations

import json
import time

from fer_sweep import metric_names as mn
from fer_sweep.fer2013 import EMOTIONS
from fer_sweep.search import SweepSpec
from fer_sweep.tracking._notes import CHOICE_TAG_PREFIX, NOTE, study_note

EXPERIMENT_KIND = "mlflow.experimentKind"


# "Custom model development" (a model-training experiment). MLflow 3.17's UI does not open
# the experiment on its runs for it: fer_sweep/tracking/_ui_app.py.
MODEL_TRAINING_KIND = "custom_model_development"


SAVED_VIEW_PREFIX = "mlflow.sharedViewState."


SAVED_VIEW_ID = "fer-sweep"


SAVED_VIEW_NAME = "fer-sweep: trials by PublicTest"


# Marks a saved view as ours: MLflow's UI rewrites the envelope without it when a user
# overrides the view, and then fer_sweep leaves it alone.
WRITTEN_BY = "fer_sweep"


# The runs table's search filter: a trial's run has the trial's number as a tag (attempt.py),
# the study's run (the parent) has none.
TRIALS_ONLY = "tags.`optuna.trial` IS NOT NULL"


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
