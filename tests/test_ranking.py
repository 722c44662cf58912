"""``best`` compares like with like: one budget at a time (``--top K`` of one study, or of
every study at that budget), thesis recipes with the same recipe at the thesis's length on
the full test split, both PrivateTest numbers labelled, a reason wherever "ours - thesis" is
blank, and a table that fits 100 columns. Studies are filled by a fake trainer (no
TensorFlow)."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest

from fer_sweep import metric_names as names
from fer_sweep.lifecycle import RUN_ID, create_or_resume
from fer_sweep.lifecycle._worker import AttemptReport, Runner, Worker, load_for_worker
from fer_sweep.outcomes import Outcome
from fer_sweep.reporting import rank_trials, render
from fer_sweep.reporting._ranking import thesis_recipe
from fer_sweep.reporting._tables import WHY
from fer_sweep.search import load_sweep
from fer_sweep.settings import Settings

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
        return report(attempt, public, final, at_best)


def report(attempt, public, final, at_best):
    c = attempt.config
    attrs = {
        names.PUBLIC_BEST: public,
        names.PRIVATE_FINAL: final,
        names.PRIVATE_AT_BEST: at_best,
        names.EPOCHS_TRAINED: c.epochs,
        names.BEST_EPOCH: c.epochs - 1,
        RUN_ID: f"{attempt.study[:8]:0>8}{attempt.number:024d}",
    }  # a 32-character id
    return AttemptReport(Outcome.COMPLETE, value=public, attrs=attrs)


class ByDropout(Runner):
    """dropout.yaml's arms at smoke: between thesis_top3-smoke's 2nd and 3rd best trials."""

    def run(self, attempt, trial):
        c = attempt.config
        public = 0.88 + (c.conv_dropout + c.fc_dropout) / 100
        return report(attempt, public, public - 0.01, public - 0.02)


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    storage = optuna.storages.InMemoryStorage()
    settings = Settings.resolve(store_dir=tmp_path_factory.mktemp("mlruns"), environ={})
    runs = [
        ("thesis_top3", "thesis", Reporting()),
        ("thesis_top3", "smoke", Reporting()),
        ("dropout", "smoke", ByDropout()),
    ]
    for name, budget, runner in runs:
        study = create_or_resume(load_sweep(name), settings, budget=budget, storage=storage)
        loaded, plan = load_for_worker(study.study_name, storage)
        Worker(loaded, plan, runner, max_retries=1).run()
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


def test_top_k_without_a_study_ranks_k_trials_of_every_study_at_each_budget(storage):
    ranking = rank_trials(storage, top=3)
    assert [(g.budget, [(r.study, r.trial) for r in g.rows]) for g in ranking.groups] == [
        ("smoke", [("thesis_top3-smoke", 1), ("thesis_top3-smoke", 3), ("dropout-smoke", 3)]),
        (
            "thesis",
            [("thesis_top3-thesis", 1), ("thesis_top3-thesis", 3), ("thesis_top3-thesis", 0)],
        ),
    ]
    assert [[r.rank for r in g.rows] for g in ranking.groups] == [[1, 2, 3], [1, 2, 3]]
    smoke = ranking.groups[0]
    assert "budget smoke (300 images per split, 2 epochs)" in smoke.title
    assert "top 3" in smoke.title and "2 studies" in smoke.title
    assert names.PUBLIC_BEST in smoke.title
    # Trained on 300 images for 2 epochs: the same recipe, but never compared with the thesis.
    first = smoke.rows[0]
    assert first.thesis_recipe == 2 and not first.comparable and first.ours_minus_thesis is None
    assert all(ours is None or ours.budget == "thesis" for _, ours in ranking.thesis)
    assert [len(g.rows) for g in rank_trials(storage, top=1).groups] == [1, 1]
    assert len(rank_trials(storage, top=50).groups[0].rows) == 4 + 6


def test_a_blank_ours_minus_thesis_says_why_in_every_format(storage):
    ranking = rank_trials(storage, top=3)
    smoke_recipe = (
        "the thesis-top2 recipe, but 300 images per split, not all of them; "
        "2 epochs, not the thesis's 80"
    )
    no_recipe = "not one of the thesis's three recipes"
    assert ranking.groups[0].rows[0].no_difference_because == smoke_recipe
    assert ranking.groups[1].rows[1].no_difference_because == no_recipe
    assert ranking.groups[1].rows[0].no_difference_because == ""  # +1.12: comparable
    for fmt in ("table", "markdown"):
        text = render(ranking, fmt, width=100)
        lines = text.splitlines()
        smoke_row = next(line for line in lines if "thesis_top3-smoke" in line and " 1 " in line)
        marker = smoke_row.split()[-1] if fmt == "table" else smoke_row.split("|")[9].split()[-1]
        assert marker == "[a]", (fmt, smoke_row)
        assert any(line.startswith(f"[a] {smoke_recipe}") for line in lines), fmt
        assert any(line.startswith(f"[a] {no_recipe}") for line in lines), fmt  # thesis budget
        assert "+1.12" in text
    data = json.loads(render(ranking, "json"))
    assert data["groups"][0]["trials"][0]["no_ours_minus_thesis_because"] == smoke_recipe
    assert data["groups"][1]["trials"][0]["no_ours_minus_thesis_because"] is None
    rows = list(csv.DictReader(io.StringIO(render(ranking, "csv"))))
    assert rows[0][WHY] == smoke_recipe and rows[3][WHY] == ""
    # A thesis model without a comparable trial says why, and names the nearest one.
    smoke_only = rank_trials(storage, study="thesis_top3-smoke")
    assert smoke_only.thesis_unmatched[3] == (
        "no comparable trial of this recipe yet (the nearest, thesis_top3-smoke trial 2: "
        "300 images per split, not all of them; 2 epochs, not the thesis's 100)"
    )
    assert "[c] no comparable trial of this recipe yet" in render(smoke_only, width=100)


def test_accuracies_on_a_subset_are_labelled_apart_from_the_thesis_figure(storage):
    ranking = rank_trials(storage, top=3)
    # The smoke group's three accuracy columns say they are on 300 images; the thesis
    # budget's and the thesis's own do not, and the thesis's figure has a column of its own.
    assert render(ranking, "table", width=100).count("(300 images)") == 3
    markdown = render(ranking, "markdown")
    smoke, thesis_budget = markdown.split("**budget ")[1:3]
    assert "| PrivateTest % final epoch (300 images) |" in smoke
    assert "| PrivateTest % final epoch |" in thesis_budget.split("**The thesis")[0]
    assert "| thesis PrivateTest % final epoch | ours (same recipe, same length) |" in markdown


@pytest.mark.parametrize("study", [None, "thesis_top3-smoke"])
def test_the_table_fits_a_100_column_terminal(storage, monkeypatch, study):
    monkeypatch.setenv("COLUMNS", "100")
    ranking = rank_trials(storage, study=study, top=3)
    table = render(ranking, "table")  # the width of the terminal, as `best` prints it
    assert max(len(line) for line in table.splitlines()) <= 100
    # Every run id whole (for the MLflow UI), every label legible (folded only at spaces).
    for g in ranking.groups:
        for r in g.rows:
            assert r.run_id in table and len(r.run_id) == 32
    assert "dropout=0.25 conv / 0.5 FC" in table and "thesis_top3-smoke" in table
    # Where there is room, one table: the words and the run ids beside the numbers.
    monkeypatch.setenv("COLUMNS", "200")
    wide = render(ranking, "table")
    assert max(len(line) for line in wide.splitlines()) <= 200

    def one_table(text):  # the numbers' header names the words and the runs too
        return any(
            line.startswith("rank")
            and "study" in line
            and "hyperparameters" in line
            and "MLflow run" in line
            for line in text.splitlines()
        )

    assert one_table(wide) and not one_table(table)


def test_every_format_says_which_privatetest_number_is_which(storage):
    ranking = rank_trials(storage, study="thesis_top3-thesis", top=4)
    table = render(ranking, "table", width=100)
    assert "PrivateTest %" in table and "final epoch" in table and "PublicTest" in table
    assert "at best-" in table  # the header's 2nd line: PrivateTest % at best-PublicTest epoch
    markdown = render(ranking, "markdown")
    assert "PrivateTest % final epoch" in markdown
    assert "PrivateTest % at best-PublicTest epoch" in markdown
    for text in (table, markdown):
        assert "66.55" in text and "+1.12" in text
    rows = list(csv.reader(io.StringIO(render(ranking, "csv"))))
    assert "PrivateTest % final epoch" in rows[0] and len({len(r) for r in rows}) == 1
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
            attrs = {
                names.TRAIN_BEST: 0.9 - attempt.config.fc_dropout,
                names.BEST_EPOCH: 2.0,
                names.PRIVATE_AT_EPOCH: {"1": 0.25},
            }
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
