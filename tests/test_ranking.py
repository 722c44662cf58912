"""``best`` compares like with like: one budget at a time, thesis recipes with the same
recipe at the thesis's length on the full test split, both PrivateTest numbers labelled.
Studies are filled by a fake trainer (no TensorFlow)."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest

from fer_sweep import metric_names as names
from fer_sweep.ranking import rank_trials, render, thesis_recipe
from fer_sweep.runs import Outcome
from fer_sweep.settings import Settings
from fer_sweep.study import create_or_resume
from fer_sweep.sweepfile import load_sweep
from fer_sweep.worker import AttemptReport, Runner, Worker, load_for_worker

# (PublicTest at the best epoch = the objective, PrivateTest final, PrivateTest at best) by the
# dropout and lr of each thesis_top3 trial, as a fake trainer reports them.
RESULTS = {
    ("0.3 all", 1e-3, 64): (0.60, 0.655, 0.650),  # the thesis's 1st recipe
    ("0.25 conv / 0.5 FC", 1e-3, 64): (0.70, 0.670, 0.668),  # the 2nd
    ("0.25 conv / 0.5 FC", 0.1, 128): (0.50, 0.620, 0.610),  # the 3rd
    ("0.25 conv / 0.5 FC", 1e-3, 128): (0.65, 0.660, 0.659),  # not in the thesis
}


class Reporting(Runner):
    def run(self, attempt, trial):
        c = attempt.config
        dropout = "0.3 all" if c.fc_dropout == 0.3 else "0.25 conv / 0.5 FC"
        public, final, at_best = RESULTS[(dropout, c.lr, c.batch_size)]
        if c.subset:  # a smoke run: high numbers on 300 images, to tempt a bad ranking
            public, final, at_best = public + 0.25, final + 0.25, at_best + 0.25
        attrs = {names.PUBLIC_BEST: public, names.PRIVATE_FINAL: final,
                 names.PRIVATE_AT_BEST: at_best, names.EPOCHS_TRAINED: c.epochs,
                 names.BEST_EPOCH: c.epochs - 1}  # fmt: skip
        return AttemptReport(Outcome.COMPLETE, value=public, attrs=attrs)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    storage = optuna.storages.InMemoryStorage()
    settings = Settings.resolve(store_dir=tmp_path_factory.mktemp("mlruns"), environ={})
    spec = load_sweep("thesis_top3")
    for budget in ("thesis", "smoke"):
        study = create_or_resume(spec, settings, budget=budget, storage=storage)
        loaded, plan = load_for_worker(study.study_name, storage)
        Worker(loaded, plan, Reporting(), max_retries=1).run()
    return storage


def test_the_thesis_presets_are_recognised_as_their_recipes():
    from fer_sweep.config import load_config

    for rank in (1, 2, 3):
        assert thesis_recipe(load_config(preset=f"thesis-top{rank}")) == rank
        # A shorter run is the same recipe (not the same length); another lr is not.
        assert thesis_recipe(load_config(preset=f"thesis-top{rank}", epochs=10)) == rank
        assert thesis_recipe(load_config(preset=f"thesis-top{rank}", lr=0.5)) is None


def test_thesis_top3_is_paired_recipe_with_recipe_not_rank_with_rank(storage):
    ranking = rank_trials(storage, study="thesis_top3-thesis", top=4)
    (group,) = ranking.groups
    assert [r.objective for r in group.rows] == [0.70, 0.65, 0.60, 0.50]
    paired = {ref.rank: (ours.trial, ours.ours_minus_thesis) for ref, ours in ranking.thesis}
    # The best trial is the 2nd recipe: it is compared with the thesis's 2nd, not its 1st.
    assert paired == {1: (0, -1.05), 2: (1, 1.12), 3: (2, -3.82)}
    assert group.rows[1].thesis_recipe is None and group.rows[1].ours_minus_thesis is None


def test_without_a_study_each_studys_best_is_shown_by_budget(storage):
    ranking = rank_trials(storage)
    assert [(g.budget, [(r.study, r.trial) for r in g.rows]) for g in ranking.groups] == [
        ("smoke", [("thesis_top3-smoke", 1)]),
        ("thesis", [("thesis_top3-thesis", 1)]),
    ]
    smoke = ranking.groups[0].rows[0]
    # Trained on 300 images for 2 epochs: the same recipe, but never compared with the thesis.
    assert smoke.thesis_recipe == 2 and not smoke.comparable and smoke.ours_minus_thesis is None
    assert all(ours is None or ours.budget == "thesis" for _, ours in ranking.thesis)


def test_every_format_says_which_privatetest_number_is_which(storage):
    ranking = rank_trials(storage, study="thesis_top3-thesis", top=4)
    table = render(ranking, "table")
    assert "at final epoch" in table and "at best-PublicTest epoch" in table
    markdown = render(ranking, "markdown")
    assert "PrivateTest % at final epoch" in markdown
    assert "PrivateTest % at best-PublicTest epoch" in markdown
    for text in (table, markdown):
        assert "66.55" in text and "+1.12" in text
    rows = list(csv.reader(io.StringIO(render(ranking, "csv"))))
    assert "PrivateTest % at final epoch" in rows[0] and len({len(r) for r in rows}) == 1
    data = json.loads(render(ranking, "json"))
    first = data["groups"][0]["trials"][0]
    assert first[names.PRIVATE_FINAL] == 0.67 and first[names.PRIVATE_AT_BEST] == 0.668
    assert first[names.PUBLIC_BEST] == 0.70 and first["ours_minus_thesis_points"] == 1.12
    assert [t[names.PRIVATE_FINAL] for t in data["thesis"]] == [0.6655, 0.6588, 0.6582]


def test_nothing_finished_yet_still_shows_the_thesis():
    empty = rank_trials(optuna.storages.InMemoryStorage())
    assert "No finished trial yet." in render(empty, "table")
    assert "66.55" in render(empty, "markdown")


REPORTING = """
name: report
base: {arch: C, epochs: 2, report_epochs: [1]}
space:
  fc_dropout: {type: categorical, choices: [0.0, 0.5]}
sampler: grid
report: [train/accuracy_best, best_epoch, PrivateTest/accuracy_at_epoch]
default_budget: smoke
"""


def test_a_studys_report_metrics_are_shown_beside_never_ranked_by(tmp_path):
    class TrainAccuracy(Runner):
        def run(self, attempt, trial):
            public = 0.3 + attempt.config.fc_dropout / 10
            attrs = {names.TRAIN_BEST: 0.9 - attempt.config.fc_dropout, names.BEST_EPOCH: 2.0,
                     names.PRIVATE_AT_EPOCH: {"1": 0.25}}  # fmt: skip
            return AttemptReport(Outcome.COMPLETE, value=public, attrs=attrs)

    storage = optuna.storages.InMemoryStorage()
    (tmp_path / "report.yaml").write_text(REPORTING)
    settings = Settings.resolve(store_dir=tmp_path / "mlruns", environ={})
    study = create_or_resume(load_sweep(tmp_path / "report.yaml"), settings, storage=storage)
    loaded, plan = load_for_worker(study.study_name, storage)
    Worker(loaded, plan, TrainAccuracy(), max_retries=1).run()
    ranking = rank_trials(storage, study="report-smoke")
    assert [r.reported[names.TRAIN_BEST] for r in ranking.groups[0].rows] == [0.4, 0.9]
    markdown = render(ranking, "markdown")
    assert "| train/accuracy_best | best_epoch | PrivateTest/accuracy_at_epoch | MLflow" in markdown
    assert "| 40.00 | 2 | epoch 1: 25.00 |" in markdown
    assert json.loads(render(ranking, "json"))["groups"][0]["trials"][1][names.TRAIN_BEST] == 0.9
    rows = list(csv.reader(io.StringIO(render(ranking, "csv"))))
    assert len({len(r) for r in rows}) == 1
