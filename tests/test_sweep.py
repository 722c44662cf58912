"""Whole sweeps through the real code paths: study, trials, MLflow nesting, resume, ranking."""

import json
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from fer_sweep import metric_names as names
from fer_sweep.errors import UserError
from fer_sweep.lifecycle import open_storage, run_sweep
from fer_sweep.reporting import rank_trials, render
from fer_sweep.search import load_sweep
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect

pytestmark = pytest.mark.slow

TINY = """
name: tiny
description: three dropout arms on a small slice
base: {arch: C, batch_size: 32, checkpoint_every: 1, optimizer: adam, lr: 1.0e-3}
space:
  dropout:
    type: categorical
    choices:
      "0.25/0.5": {conv_dropout: 0.25, fc_dropout: 0.5}
      "0.3 all": {conv_dropout: 0.3, fc_dropout: 0.3}
      "off": {conv_dropout: 0.0, fc_dropout: 0.0}
sampler: grid
budgets: {tiny: {subset: 60, epochs: 2}}
default_budget: tiny
"""


def _write(tmp_path, text, name="tiny"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return load_sweep(path)


def _settings():
    return Settings.resolve()


def _storage():
    return open_storage(_settings())


def _client():
    return connect(_settings().tracking_uri)


def _children(client, exp_name):
    exp = client.get_experiment_by_name(exp_name)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fer_sweep.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_smoke_sweep_completes_resumes_and_nests_in_mlflow(tmp_path, fer_csv):
    spec = _write(tmp_path, TINY)
    counts = run_sweep(spec, _settings(), data=str(fer_csv), live=False)
    assert counts["complete"] == 3 and counts["fail"] == 0

    study = optuna.load_study(study_name="tiny-tiny", storage=_storage())
    trials = study.get_trials()
    assert sorted(t.params["dropout"] for t in trials) == ["0.25/0.5", "0.3 all", "off"]

    client = _client()
    parents, children = _children(client, "tiny-tiny")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
        assert [
            m.step for m in client.get_metric_history(run.info.run_id, names.PUBLIC_ACCURACY)
        ] == [
            1,
            2,
        ]
        assert run.data.params["epochs"] == "2" and run.data.params["subset"] == "60"
        assert run.data.params["arch"] == "C"  # the full resolved config, not only the sampled
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    assert set(by_run) == {r.info.run_id for r in children}
    for run in children:
        t = by_run[run.info.run_id]
        assert run.data.tags["optuna.trial"] == str(t.number)
        assert run.data.metrics[names.PUBLIC_BEST] == pytest.approx(t.value)

    # Re-running the same sweep resumes it: nothing is repeated.
    again = run_sweep(spec, _settings(), data=str(fer_csv), live=False)
    assert again["complete"] == 3 and len(study.get_trials()) == 3
    assert len(_children(client, "tiny-tiny")[1]) == 3

    # best: every format, from the same store.
    ranking = rank_trials(_storage(), study="tiny-tiny", top=3)
    (group,) = ranking.groups
    rows = group.rows
    assert [r.objective for r in rows] == sorted((t.value for t in trials), reverse=True)
    assert [r.private_final for r in rows] == [
        by_run[r.run_id].user_attrs[names.PRIVATE_FINAL] for r in rows
    ]
    as_json = json.loads(render(ranking, "json"))
    assert [t[names.PRIVATE_FINAL] for t in as_json["thesis"]] == [0.6655, 0.6588, 0.6582]
    assert as_json["groups"][0]["trials"][0]["run_id"] == rows[0].run_id
    # 2 epochs on 60 images: never set against the thesis's 80-epoch, full-data numbers.
    assert all(t["ours_minus_thesis_points"] is None for t in as_json["thesis"])
    table = render(ranking, "table")
    assert "66.55" in table and rows[0].run_id in table
    md = render(ranking, "markdown")
    assert "| rank | study |" in md and md.count("\n| 1 |") == 2
    csv_text = render(ranking, "csv")
    assert csv_text.splitlines()[0].startswith("source,budget,rank,study")
    assert len(csv_text.splitlines()) == 1 + 3 + 3

    # best --ensemble: the trials' logged final models, evaluated once on their PrivateTest.
    # An ensemble of one is that trial: the loaded model, the split and the scoring all agree.
    from fer_sweep.data import load_dataset
    from fer_sweep.reporting import evaluate_top_trials
    from fer_sweep.reporting._ensemble import ROLE_TAG

    dataset = load_dataset(fer_csv)
    alone = evaluate_top_trials(client, study, rows[:1], dataset)
    assert alone.report.accuracy == pytest.approx(rows[0].private_final)
    assert alone.images == 60
    # The `ensemble` command names a trial as STUDY:NUMBER: the same run and config.
    from fer_sweep.reporting import trial_members

    (member,) = trial_members(client, _storage(), f"{study.study_name}:{rows[0].trial}")
    assert (member.run_id, member.config.subset) == (rows[0].run_id, 60)
    with pytest.raises(UserError, match="no finished trial 999"):
        trial_members(client, _storage(), f"{study.study_name}:999")
    three = evaluate_top_trials(client, study, rows, dataset, tta=True)
    assert three.trials == [r.trial for r in rows] and 0.0 <= three.report.accuracy <= 1.0
    run = client.get_run(three.run_id)
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert run.info.status == "FINISHED" and run.data.tags[ROLE_TAG] == "ensemble"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.metrics[names.PRIVATE_FINAL] == pytest.approx(three.report.accuracy)
    assert "flip TTA" in run.info.run_name and "%" in run.data.tags["mlflow.note.content"]

    # Per-image predictions: every trial logged its own, the ensembles theirs, and the ensemble
    # of one predicts image for image what its trial's final weights did.
    from fer_sweep.training import predictions

    def logged(run_id: str) -> predictions.Predictions:
        local = client.download_artifacts(run_id, predictions.ARTIFACT, str(tmp_path / run_id))
        return predictions.load(local)

    trial = logged(rows[0].run_id)
    assert trial.variants == ["final", "best"] and list(trial.splits) == list(
        predictions.TEST_SPLITS
    )
    private = trial.split("PrivateTest")
    assert len(private.rows) == 60 and private.rows.dtype == np.int32
    assert private.correct("final").mean() == pytest.approx(rows[0].private_final)
    assert private.correct("best").mean() == pytest.approx(rows[0].private_at_best)
    assert trial.dataset_sha256 == dataset.sha256
    single = logged(alone.run_id).split("PrivateTest")
    assert np.array_equal(single.rows, private.rows)
    assert np.array_equal(single.pred["ensemble"], private.pred["final"])
    assert logged(three.run_id).variants == ["ensemble+tta"]

    # report: each trial's accuracies from its predictions, every pair tested on the images,
    # logged under the study's run and linked from its note.
    from fer_sweep.reporting import build_study_report, finished_trials, log_study_report, stats
    from fer_sweep.tracking import NOTE

    built = build_study_report(client, finished_trials(_storage(), "tiny-tiny"), "tiny-tiny")
    assert [c.trial for c in built.configurations] == sorted(t.number for t in trials)
    first = next(c for c in built.configurations if c.run_id == rows[0].run_id)
    assert first.scores["PrivateTest/final"].value == pytest.approx(rows[0].private_final)
    assert first.scores["PublicTest/best"].value == pytest.approx(rows[0].public_best)
    pairs = built.comparisons["PrivateTest/final"]
    assert len(pairs) == 3 and all(c.test == "McNemar exact" and c.images == 60 for c in pairs)
    assert [c.p_holm for c in pairs] == pytest.approx(stats.holm([c.p for c in pairs]))
    assert json.loads(built.to_json())["comparisons"]["PrivateTest/best"][0]["images"] == 60
    assert "## Between configurations: PrivateTest, final weights" in built.to_markdown()
    log_study_report(client, study, built)
    logged_files = {f.path for f in client.list_artifacts(parent, "report")}
    assert logged_files == {
        "report/report.md",
        "report/report-intervals.png",
        "report/report-curves.png",
    }
    log_study_report(client, study, built)  # again: the note keeps one link
    assert client.get_run(parent).data.tags[NOTE].count("report/report.md") == 1

    # A trial whose predictions are gone (one that finished before trials stored them): one
    # error that names it.
    from mlflow.utils.file_utils import local_file_uri_to_path

    artifacts = local_file_uri_to_path(client.get_run(rows[0].run_id).info.artifact_uri)
    (Path(artifacts) / predictions.ARTIFACT).unlink()
    with pytest.raises(UserError, match=f"trial {rows[0].trial} of study tiny-tiny: no "):
        build_study_report(client, finished_trials(_storage(), "tiny-tiny"), "tiny-tiny")


DIVERGE_AND_PRUNE = """
name: rough
base: {arch: C, batch_size: 32, checkpoint_every: 1}
space:
  recipe:
    type: categorical
    choices:
      "diverges": {optimizer: sgd, lr: 1.0e+12, momentum: 0.9, schedule: constant,
                   bn_position: none}
      "fine": {optimizer: adam, lr: 1.0e-3}
sampler: grid
pruner: {type: threshold, lower: 1.0, n_warmup_steps: 1}
budgets: {tiny: {subset: 60, epochs: 3}}
default_budget: tiny
"""


def test_a_diverging_trial_fails_alone_and_a_pruned_trial_keeps_its_curve(tmp_path, fer_csv, capfd):
    spec = _write(tmp_path, DIVERGE_AND_PRUNE, "rough")
    counts = run_sweep(spec, _settings(), data=str(fer_csv), live=False)
    assert counts["fail"] == 1 and counts["pruned"] == 1
    said = capfd.readouterr()
    assert "diverged: training loss became nan in epoch" in said.out + said.err

    study = optuna.load_study(study_name="rough-tiny", storage=_storage())
    failed = study.get_trials(states=(TrialState.FAIL,))[0]
    pruned = study.get_trials(states=(TrialState.PRUNED,))[0]
    assert (
        failed.params["recipe"] == "diverges" and "loss became nan" in failed.user_attrs["reason"]
    )
    assert pruned.params["recipe"] == "fine"

    client = _client()
    fail_run = client.get_run(failed.user_attrs["mlflow_run_id"])
    assert fail_run.info.status == "FAILED"
    assert fail_run.data.tags["fer_sweep.end_reason"] == "diverged"
    assert failed.user_attrs["outcome"] == "diverged" and len(study.trials) == 2  # not retried
    prune_run = client.get_run(pruned.user_attrs["mlflow_run_id"])
    assert prune_run.info.status == "KILLED" and prune_run.data.tags["optuna.state"] == "PRUNED"
    steps = [
        m.step for m in client.get_metric_history(prune_run.info.run_id, names.PUBLIC_ACCURACY)
    ]
    assert 1 <= len(steps) < 3 and steps == list(range(1, len(steps) + 1))
    nothing = rank_trials(_storage(), study="rough-tiny")
    assert nothing.groups[0].rows == []
    assert "No finished trial yet." in render(nothing, "table")


FOURTH_ARM = '\n      "0.5 all": {conv_dropout: 0.5, fc_dropout: 0.5}'
OFF_ARM = '"off": {conv_dropout: 0.0, fc_dropout: 0.0}'
TWO_WORKERS = TINY.replace("name: tiny", "name: pair").replace(OFF_ARM, OFF_ARM + FOURTH_ARM)


def test_two_workers_share_one_study_without_lost_or_duplicated_trials(tmp_path, fer_csv):
    spec = _write(tmp_path, TWO_WORKERS, "pair")
    counts = run_sweep(spec, _settings(), jobs=2, data=str(fer_csv), live=False)
    assert counts["complete"] == 4

    study = optuna.load_study(study_name="pair-tiny", storage=_storage())
    trials = study.get_trials()
    assert len(trials) == 4
    assert sorted(t.params["dropout"] for t in trials) == ["0.25/0.5", "0.3 all", "0.5 all", "off"]
    children = _children(_client(), "pair-tiny")[1]
    assert sorted(int(r.data.tags["optuna.trial"]) for r in children) == [0, 1, 2, 3]
    assert all(r.info.status == "FINISHED" for r in children)


def test_a_study_keeps_its_definition_but_not_its_description(tmp_path):
    from fer_sweep.lifecycle import create_or_resume

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    create_or_resume(load_sweep(path), _settings())
    path.write_text(TINY.replace("three dropout arms", "three dropout arms, reworded"))
    create_or_resume(load_sweep(path), _settings())  # only the description changed: resumes
    path.write_text(TINY.replace("batch_size: 32", "batch_size: 64"))
    with pytest.raises(UserError, match="created from another version"):
        create_or_resume(load_sweep(path), _settings())


def test_jax_workers_on_one_machine_share_the_gpu_memory(monkeypatch, tmp_path):
    from fer_sweep import backend
    from fer_sweep.lifecycle._processes import MEM_FRACTION, worker_environ
    from fer_sweep.settings import Settings

    settings = Settings.resolve(store_dir=tmp_path, environ={})
    monkeypatch.setattr(backend, "name", lambda: "jax")
    env = worker_environ(settings, 4, {"PATH": "/bin"})
    assert env[MEM_FRACTION] == "0.225"  # 90 % of the GPU in four shares
    assert env["PATH"] == "/bin" and env["FER_SWEEP_STORE"] == str(tmp_path)
    assert worker_environ(settings, 3, {})[MEM_FRACTION] == "0.300"
    assert MEM_FRACTION not in worker_environ(settings, 1, {})  # one process: JAX's default
    # A fraction the user chose is theirs.
    assert worker_environ(settings, 4, {MEM_FRACTION: "0.5"})[MEM_FRACTION] == "0.5"
    # TensorFlow's and torch's workers are left alone.
    monkeypatch.setattr(backend, "name", lambda: "tensorflow")
    assert MEM_FRACTION not in worker_environ(settings, 4, {})


SEEDED = """
name: seeded
base: {arch: C, batch_size: 16, optimizer: adam, lr: 1.0e-3, schedule: constant}
space:
  fc_dropout: {type: categorical, choices: [0.0, 0.5]}
sampler: grid
seeds: 2
budgets: {tiny: {subset: 40, epochs: 1}}
default_budget: tiny
"""


def test_seeds_2_trains_nested_seed_runs_and_the_report_intervals_span_seeds_and_images(
    tmp_path, fer_csv
):
    from fer_sweep.lifecycle import SEED_RUNS
    from fer_sweep.reporting import build_study_report, finished_trials

    spec = _write(tmp_path, SEEDED, "seeded")
    counts = run_sweep(spec, _settings(), data=str(fer_csv), live=False)
    assert counts["complete"] == 2
    study = optuna.load_study(study_name="seeded-tiny", storage=_storage())
    client = _client()
    for t in study.get_trials():
        seeds = [client.get_run(r) for r in t.user_attrs[SEED_RUNS]]
        assert [r.data.tags["mlflow.parentRunId"] for r in seeds] == [
            t.user_attrs["mlflow_run_id"]
        ] * 2
        assert [r.info.status for r in seeds] == ["FINISHED"] * 2
        assert [r.data.params["seed"] for r in seeds] == ["0", "1"]
        assert t.value == pytest.approx(np.mean(t.user_attrs["seed_values"]))
    built = build_study_report(client, finished_trials(_storage(), "seeded-tiny"), "seeded-tiny")
    for c in built.configurations:
        assert c.correct("PrivateTest", "final").shape == (2, 40)  # both seeds, same images
        est = c.scores["PrivateTest/final"]
        assert est.method == "bootstrap over seeds and images" and est.low <= est.value <= est.high
    (pair,) = built.comparisons["PrivateTest/final"]
    assert pair.test == "bootstrap over seeds and images" and pair.seeds == (2, 2)
    assert 0.0 <= pair.p_a_beats_b <= 1.0
    assert "2 seeds each" in built.to_markdown()
