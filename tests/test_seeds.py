"""``seeds: K``: the key, the seed derivation, and a trial's seeds driven by a fake trainer.

The trainer is a stand-in (no Keras training): in-memory Optuna, a throwaway MLflow store,
and per-seed PublicTest curves chosen by the test, so the objective, the pruner's values,
the runs' nesting and the resume can be checked exactly.
"""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from fer_sweep import metric_names as names
from fer_sweep.config import TrainConfig
from fer_sweep.errors import TrainingInterrupted, UserError
from fer_sweep.lifecycle import RUN_ID, SEED_METRICS, SEED_RUNS, create_or_resume
from fer_sweep.lifecycle._attempt import SEED_TAG, SEEDS_FILE, TrainingRunner
from fer_sweep.lifecycle._study import SEED_VALUES, STOPPED_IN_SEED, work_folder
from fer_sweep.lifecycle._worker import Worker, load_for_worker
from fer_sweep.reporting import rank_trials, render
from fer_sweep.search import load_sweep
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect, mean_sd, study_run
from fer_sweep.training import TrainResult, report_of, training_data

PAIR = """
name: pair
base: {arch: C, epochs: 3, batch_size: 32}
space:
  fc_dropout: {type: categorical, choices: [0.0, 0.5]}
sampler: grid
seeds: 3
budgets: {tiny: {subset: 40, epochs: 3}, one: {subset: 40, epochs: 3, seeds: 1}}
default_budget: tiny
"""


def _spec(tmp_path, text=PAIR):
    path = tmp_path / "pair.yaml"
    path.write_text(textwrap.dedent(text))
    return load_sweep(path)


# --- the key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("seeds: 0", "seeds"),
        ("seeds: two", "seeds"),
        ("seeds: true", "seeds"),
        ("seeds: 1000", "seeds"),
        ("budgets: {b: {subset: 0, seeds: -1}}", "budgets.b.seeds"),
    ],
)
def test_a_bad_number_of_seeds_is_one_line_naming_its_key(tmp_path, line, where):
    text = "space: {lr: {type: fixed, value: 0.001}}\nn_trials: 1\n" + line + "\n"
    with pytest.raises(UserError) as err:
        _spec(tmp_path, text)
    msg = str(err.value)
    assert f": {where}: " in msg and "an integer from 1 to 100" in msg and "\n" not in msg


def test_seeds_come_from_the_override_then_the_budget_then_the_file(tmp_path):
    spec = _spec(tmp_path)
    assert spec.seeds_at("tiny") == 3 and spec.seeds_at("one") == 1
    assert spec.seeds_at("one", 2) == 2
    with pytest.raises(UserError, match="--seeds 0: expected an integer from 1 to 100"):
        spec.seeds_at("tiny", 0)


def test_a_study_keeps_its_seeds_and_refuses_another_number_once_it_has_trials(tmp_path):
    settings = Settings.resolve(store_dir=tmp_path / "store", environ={})
    storage = optuna.storages.InMemoryStorage()
    study = create_or_resume(_spec(tmp_path), settings, storage=storage, seeds=2)
    assert study.user_attrs["seeds"] == 2
    study.ask()  # a trial has started
    again = create_or_resume(_spec(tmp_path), settings, storage=storage)  # no --seeds: kept
    assert again.user_attrs["seeds"] == 2
    with pytest.raises(UserError, match="trains 2 seed\\(s\\) per configuration, not 3"):
        create_or_resume(_spec(tmp_path), settings, storage=storage, seeds=3)


def test_a_configurations_seeds_differ_in_seed_only_and_train_on_the_same_images(fer_dataset):
    config = TrainConfig(subset=20, seed=4)
    assert config.for_seed(0) is config
    second = config.for_seed(1)
    assert second.seed == 5 and second.data_seed == 4
    assert second.model_dump(exclude={"seed", "subset_seed"}) == config.model_dump(
        exclude={"seed", "subset_seed"}
    )
    for split in ("Training", "PublicTest", "PrivateTest"):
        assert np.array_equal(
            training_data(config, fer_dataset).row_numbers(split),
            training_data(second, fer_dataset).row_numbers(split),
        )
    # Without subset_seed a seed's subset is its own, as before the field existed.
    assert not np.array_equal(
        training_data(TrainConfig(subset=20, seed=5), fer_dataset).row_numbers("Training"),
        training_data(config, fer_dataset).row_numbers("Training"),
    )


# --- a trial's seeds ----------------------------------------------------------------------


class FakeTrainer:
    """Plays each seed's PublicTest curve ``curves[seed offset]`` through the callbacks and
    returns a result whose numbers come from it. ``stop_at`` = (seed, epoch): raise
    TrainingInterrupted there once, as a Ctrl-C would."""

    def __init__(self, curves, stop_at=None):
        self.curves = curves
        self.stop_at = stop_at
        self.calls = []  # (seed, workdir, pruned, first epoch)

    def __call__(self, config, dataset, *, workdir, callbacks, stop_event):
        k = config.seed
        pruned = any(type(cb).__name__ == "PruningCallback" for cb in callbacks)
        done = (
            int((Path(workdir) / "epoch").read_text()) if (Path(workdir) / "epoch").exists() else 0
        )
        self.calls.append((k, Path(workdir).name, pruned, done + 1))
        curve = self.curves[k]
        for epoch in range(done, len(curve)):
            for cb in callbacks:
                cb.on_epoch_end(epoch, {"val_accuracy": curve[epoch], "accuracy": 0.9})
            Path(workdir).mkdir(parents=True, exist_ok=True)
            (Path(workdir) / "epoch").write_text(str(epoch + 1))  # the "checkpoint"
            if self.stop_at == (k, epoch + 1):
                self.stop_at = None
                stop_event.set()  # what a Ctrl-C does before the trainer stops
                raise TrainingInterrupted(epoch + 1)
        labels = np.arange(10) % 7
        pred = np.where(np.arange(10) < 5 + k, labels, (labels + 1) % 7)
        report = report_of(labels, pred)
        return TrainResult(
            config=config,
            epochs_trained=len(curve),
            history={"val_accuracy": list(curve), "accuracy": [0.9] * len(curve)},
            best_epoch=int(np.argmax(curve)) + 1,
            best_val_accuracy=max(curve),
            final_val_accuracy=curve[-1],
            test_final=report,
            test_best=report,
            resumed_from_epoch=done,
            fit_seconds=0.0,
            eval_seconds=0.0,
            workdir=Path(workdir),
        )


def _worker(tmp_path, fer_dataset, trainer, stop=None):
    settings = Settings.resolve()  # the isolated store of this test
    spec = _spec(tmp_path)
    storage = optuna.storages.InMemoryStorage()
    study = create_or_resume(spec, settings, storage=storage, n_trials=1)
    client = connect(settings.tracking_uri)
    parent = study_run(client, study, settings.artifact_root)
    loaded, plan = load_for_worker(study.study_name, storage)
    stop = stop or threading.Event()
    runner = TrainingRunner(
        study.study_name, settings, client, fer_dataset, stop, parent, trainer=trainer
    )
    runner.study = loaded
    return Worker(loaded, plan, runner, max_retries=1, stop_event=stop), loaded, client, runner


CURVES = {0: [0.30, 0.50, 0.40], 1: [0.20, 0.60, 0.55], 2: [0.10, 0.20, 0.70]}


def test_a_trials_seeds_nest_under_its_run_its_value_is_their_mean_and_only_seed_0_prunes(
    tmp_path, fer_dataset
):
    trainer = FakeTrainer(CURVES)
    w, study, client, _ = _worker(tmp_path, fer_dataset, trainer)
    assert w.run() == 1
    (t,) = study.get_trials()
    assert t.state == TrialState.COMPLETE
    assert t.value == pytest.approx((0.50 + 0.60 + 0.70) / 3)  # objective at: best
    assert t.user_attrs[SEED_VALUES] == pytest.approx([0.50, 0.60, 0.70])
    # The pruner saw seed 0's curve only, so every trial's intermediate values are one seed's.
    assert t.intermediate_values == {1: 0.30, 2: 0.50, 3: 0.40}
    assert [(k, folder, pruned) for k, folder, pruned, _ in trainer.calls] == [
        (0, "seed-0", True),
        (1, "seed-1", False),
        (2, "seed-2", False),
    ]
    # MLflow: the trial's run is the configuration; each seed a run nested under it.
    trial_run = client.get_run(t.user_attrs[RUN_ID])
    seeds = [client.get_run(r) for r in t.user_attrs[SEED_RUNS]]
    assert [r.data.tags["mlflow.parentRunId"] for r in seeds] == [trial_run.info.run_id] * 3
    assert [r.data.tags[SEED_TAG] for r in seeds] == ["0 (seed 0)", "1 (seed 1)", "2 (seed 2)"]
    assert [r.data.params["seed"] for r in seeds] == ["0", "1", "2"]
    assert {r.data.params["subset_seed"] for r in seeds[1:]} == {"0"}
    assert all("optuna.trial" not in r.data.tags for r in seeds)  # never mistaken for trials
    privates = [0.5, 0.6, 0.7]
    assert t.user_attrs[SEED_METRICS][names.PRIVATE_FINAL] == pytest.approx(privates)
    assert trial_run.data.metrics[names.PRIVATE_FINAL] == pytest.approx(0.6)
    assert trial_run.data.metrics[f"{names.PRIVATE_FINAL}_sd"] == pytest.approx(0.1)
    # best: mean +- sd over the seeds.
    (row,) = rank_trials(study._storage, study=study.study_name).groups[0].rows
    assert mean_sd(privates) == "60.00 +- 10.00" and "60.00 +- 10.00" in render(
        rank_trials(study._storage, study=study.study_name), "markdown"
    )
    assert row.seed_runs == t.user_attrs[SEED_RUNS]


def test_a_trial_interrupted_during_seed_1_resumes_at_seed_1_from_its_checkpoint(
    tmp_path, fer_dataset
):
    stop = threading.Event()
    trainer = FakeTrainer(CURVES, stop_at=(1, 2))
    w, study, client, runner = _worker(tmp_path, fer_dataset, trainer, stop)
    w.run()
    first = study.get_trials()[0]
    assert first.user_attrs["outcome"] == "interrupted" and first.user_attrs[STOPPED_IN_SEED] == 1
    folder = runner.settings.workdir(work_folder(study, 0))
    assert sorted(json.loads((folder / SEEDS_FILE).read_text())) == ["0", "1"]
    stop.clear()
    assert Worker(study, w.plan, runner, max_retries=1, stop_event=stop).run() == 1
    done = next(t for t in study.get_trials() if t.state == TrialState.COMPLETE)
    # Seed 0 kept, seed 1 from its checkpoint after epoch 2, then seed 2: never repeated.
    assert [(k, start) for k, _, _, start in trainer.calls] == [(0, 1), (1, 1), (1, 3), (2, 1)]
    assert done.value == pytest.approx(0.6) and done.user_attrs["resumed_from_epoch"] == 2
    runs = [client.get_run(r) for r in done.user_attrs[SEED_RUNS]]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {done.user_attrs[RUN_ID]}
