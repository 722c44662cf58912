"""What the MLflow UI shows a person: names, notes, the dataset input, the saved view."""

import json
import textwrap

import numpy as np
import pytest

from fer_sweep import metric_names as mn
from fer_sweep import thesis
from fer_sweep.config import load_config
from fer_sweep.data import Dataset
from fer_sweep.search import load_sweep
from fer_sweep.tracking import (
    choice_tags,
    dataset_input,
    runs_url,
    study_summary,
    trial_note,
    trial_run_name,
)
from fer_sweep.tracking._notes import METRIC_MEANINGS, study_note
from fer_sweep.tracking._views import (
    SAVED_VIEW_NAME,
    TRIALS_ONLY,
    experiment_tags,
    ours,
    saved_view,
)

SWEEP = """
name: drop
description: Does dropout help? The thesis found 0.3 everywhere best (66.55 %).
base: {arch: C}
space:
  dropout:
    type: categorical
    choices:
      "0.3 all": {conv_dropout: 0.3, fc_dropout: 0.3}
      "0.8 FC only": {conv_dropout: 0.0, fc_dropout: 0.8}
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
sampler: random
n_trials: 4
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "drop.yaml"
    path.write_text(textwrap.dedent(SWEEP))
    return load_sweep(path)


def test_the_dataset_input_names_the_file_its_hash_and_split_sizes(tmp_path):
    labels = np.array([0, 3, 3, 6, 1, 2])
    split = np.array([0, 0, 0, 1, 2, 2])
    source = tmp_path / "fer2013.csv.gz"
    ds = Dataset(np.zeros((6, 48, 48), np.uint8), labels, split, str(source), "ab12" * 16)
    entry = dataset_input(ds)
    assert entry.dataset.name == "fer2013.csv.gz"
    assert entry.dataset.digest == ("ab12" * 16)[:16] and len(entry.dataset.digest) <= 36
    profile = json.loads(entry.dataset.profile)
    assert profile["sha256"] == "ab12" * 16
    assert profile["rows"] == {"Training": 3, "PublicTest": 1, "PrivateTest": 2}
    assert json.loads(entry.dataset.source) == {"uri": source.as_uri()}
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "training")]


def test_a_trial_is_named_and_tagged_by_what_was_chosen():
    choices = {"dropout": "0.8 FC only", "lr": 0.000123456}
    assert trial_run_name(4, choices) == "t04 dropout=0.8 FC only; lr=0.0001235"
    assert trial_run_name(123, {}) == "t123"
    assert choice_tags(choices) == {
        "choice.dropout": "0.8 FC only",
        "choice.lr": "0.0001235",
    }


def test_the_thesis_reference_is_the_same_recipe_whatever_the_budget():
    top1 = load_config(preset="thesis-top1", epochs=2, subset=300)
    assert thesis.reference(top1).private_accuracy == 66.55
    top3 = load_config(preset="thesis-top3")
    assert thesis.reference(top3).rank == 3
    other = load_config(preset="thesis-top1", overrides=["fc_dropout=0.8"])
    assert thesis.reference(other) is None


def test_a_trial_note_compares_with_the_thesis_only_where_best_does():
    """One rule (thesis.comparable) for best, the notes and the report: a smoke trial of a
    thesis recipe, or another recipe at full length, gets no gap, and says so in the first
    50 characters (what the runs table's Description column shows)."""
    from fer_sweep.reporting._ranking import Ranked

    def note(config, final, epochs):
        return trial_note(
            config, private_final=final, private_at_best=0.6, best_epoch=1, epochs_trained=epochs
        )

    smoke = load_config(preset="thesis-top2", epochs=2, subset=300)
    text = note(smoke, 0.612345, 2)
    first = text.splitlines()[0]
    assert first == "PrivateTest 61.23 % (not comparable with thesis)" and len(first) <= 50
    assert "-4.65" not in text and "-42" not in text  # no gap where best shows "-"
    assert "300 images per split" in text and "its 2nd model, same recipe, reached 65.88 %" in text
    assert "(epoch 1 of 2): 60.00 %" in text

    other = load_config(overrides=["fc_dropout=0.8"])  # 80 epochs, all images, no recipe
    text = note(other, 0.6655, 80)
    assert "not comparable" in text.splitlines()[0] and "+0.00" not in text
    assert "not one of the thesis's three recipes" in text and "65.82 %" in text

    full = load_config(preset="thesis-top2")
    text = note(full, 0.6688, 80)
    assert text.startswith("PrivateTest 66.88 % vs thesis 65.88 % (+1.00)\n")
    assert "(its 2nd model, same recipe, same length): 65.88 %, +1.00 points" in text
    assert note(full, 0.6688, 79).splitlines()[0].endswith("(not comparable with thesis)")

    # best decides it the same way: comparable rows only for the same three cases.
    assert [
        thesis.comparable(c, e)[0] is not None
        for c, e in ((smoke, 2), (other, 80), (full, 80), (full, 79))
    ] == [False, False, True, False]
    assert Ranked.__dataclass_fields__["comparable"].default is False


def test_the_study_note_says_the_question_and_every_metric(spec):
    note = study_note(spec, "smoke")
    assert "Does dropout help?" in note and "300 images per split, 2 epochs" in note
    assert f"ranked by `{mn.PUBLIC_BEST}`" in note and "66.55 %" in note
    logged = [v for k, v in vars(mn).items() if k.isupper() and isinstance(v, str)]
    assert set(logged) <= set(METRIC_MEANINGS)  # a new metric must be explained
    for name in logged:
        assert f"`{name}`" in note
    assert f"`{mn.percent_name(mn.PUBLIC_BEST)}`" in note


def test_the_study_notes_first_line_is_plain_text_for_the_experiments_list(spec):
    """MLflow's experiments list shows the start of the description unrendered."""
    first = study_note(spec, "smoke").splitlines()[0]
    assert first == "drop (smoke: 300 images per split, 2 epochs): Does dropout help?"
    assert not set(first) & set("*`#|_[")


def test_the_saved_view_shows_the_trials_choices_and_splits_in_percent_by_the_objective(spec):
    key, value = saved_view(spec, "parent123", now_ms=5)
    assert key == "mlflow.sharedViewState.fer-sweep"
    envelope = json.loads(value)
    assert envelope["createdAt"] == 5 and envelope["name"] == SAVED_VIEW_NAME
    state = json.loads(envelope["state"])
    # Trials only: the study's run (no optuna.trial tag) would repeat its best trial's row.
    assert state["searchFilter"] == TRIALS_ONLY == "tags.`optuna.trial` IS NOT NULL"
    # Sorted by the fraction: every trial has it, runs logged before the twins too; same order.
    assert state["orderByKey"] == "metrics.`PublicTest/accuracy_best`"
    assert state["orderByAsc"] is False
    assert state["selectedColumns"] == [
        "tags.`choice.dropout`",
        "tags.`choice.lr`",
        "attributes.`Description`",
        "metrics.`PublicTest/accuracy_best_pct`",
        "metrics.`PrivateTest/accuracy_final_pct`",
        "metrics.`PrivateTest/accuracy_at_best_epoch_pct`",
    ]
    assert state["columnOrder"][0] == "attributes.`Run Name`"
    sections = [s["name"] for s in state["compareRunSections"]]
    assert sections[:3] == ["PublicTest", "PrivateTest", "train"]
    cards = {c["metricKey"]: c for c in state["compareRunCharts"]}
    assert cards[mn.PUBLIC_ACCURACY]["type"] == "LINE" and not cards[mn.PUBLIC_ACCURACY]["deleted"]
    # A once-per-run accuracy is one bar, in percent; its fraction's card is there, deleted,
    # so that the UI does not add it back as a second bar of the same number.
    twin = mn.percent_name(mn.PRIVATE_FINAL)
    assert cards[twin]["type"] == "BAR" and not cards[twin]["deleted"]
    assert cards[mn.PRIVATE_FINAL]["type"] == "BAR" and cards[mn.PRIVATE_FINAL]["deleted"]
    assert len({c["uuid"] for c in state["compareRunCharts"]}) == len(state["compareRunCharts"])
    assert ours(value) and not ours('{"name": "mine"}')
    assert state["runsExpanded"] == {"parent123": True}
    tags = experiment_tags(spec, "smoke", "parent123")
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert runs_url("http://h:1/", "7") == (
        "http://h:1/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=fer-sweep"
    )


def test_the_study_run_note_gives_the_best_trial_in_percent():
    import optuna

    best = optuna.trial.create_trial(
        params={"dropout": "0.3 all"},
        distributions={"dropout": optuna.distributions.CategoricalDistribution(["0.3 all"])},
        value=0.6,
        user_attrs={mn.PUBLIC_BEST: 0.6, mn.PRIVATE_FINAL: 0.65432, mn.PRIVATE_AT_BEST: 0.66},
    )
    best.number = 3
    note = study_summary("drop-smoke", best, 6)
    assert note.splitlines()[0] == "Best trial: not comparable with the thesis"
    assert "Best of 6 complete trial(s) by PublicTest: t03 dropout=0.3 all" in note
    assert "- PrivateTest, final weights: 65.43 %" in note
    assert "- PublicTest, best epoch: 60.00 %" in note and "66.55 %" in note


def test_the_study_note_compares_its_best_trial_only_when_comparable():
    import optuna

    best = optuna.trial.create_trial(
        value=0.65, user_attrs={mn.PRIVATE_FINAL: 0.6700, mn.EPOCHS_TRAINED: 80}
    )
    best.number = 0
    full = study_summary("t", best, 1, load_config(preset="thesis-top1"))
    assert full.splitlines()[0] == "Best: 67.00 % vs thesis 66.55 % (+0.45)"
    smoke = study_summary("t", best, 1, load_config(preset="thesis-top1", subset=300))
    assert smoke.splitlines()[0] == "Best trial: not comparable with the thesis"
    assert "300 images per split" in smoke and "+0.45" not in smoke
