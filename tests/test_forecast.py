"""The forecast before a sweep and the progress while it runs, without training: in-memory
Optuna, a fake measurement and a fake clock (milliseconds)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import textwrap
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from fer_sweep.config import load_config
from fer_sweep.lifecycle import (
    PaceCache,
    TrialProgress,
    Work,
    create_or_resume,
    epoch_end_message,
    forecast,
    forecast_line,
    pace_key,
)
from fer_sweep.lifecycle._forecast import SHORT_FIT, Pace, budget_reason, summary_line, sweep_work
from fer_sweep.lifecycle._progress import EPOCH_PROGRESS, EPOCH_SECONDS, StudyView
from fer_sweep.lifecycle._study import STOPPED_AFTER_EPOCH, STOPPED_IN_SEED
from fer_sweep.lifecycle._worker import AttemptReport, Runner, Worker, load_for_worker
from fer_sweep.outcomes import Outcome
from fer_sweep.search import load_sweep, make_plan
from fer_sweep.settings import Settings

GRID = """
name: grid
base: {arch: C, epochs: 80, batch_size: 64}
space:
  dropout:
    type: categorical
    choices:
      "a": {conv_dropout: 0.0, fc_dropout: 0.0}
      "b": {conv_dropout: 0.1, fc_dropout: 0.1}
      "c": {conv_dropout: 0.2, fc_dropout: 0.2}
sampler: grid
default_budget: quick
"""


class Measure:
    """A fake short fit: 0.01 s an image, counting its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, config):
        self.calls.append(config.arch)
        return Pace(0.01, "2026-12-04T13:40:00+00:00", "4 batches of a short fit")


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(textwrap.dedent(GRID))
    return load_sweep(path)


def test_a_missing_pace_is_measured_once_then_read_from_the_cache(tmp_path):
    cache, measure = PaceCache(tmp_path), Measure()
    config = load_config(arch="C", batch_size=64)
    work = [Work(config, 10, 28_709)] * 6
    first = forecast(work, cache, backend="tensorflow", jobs=2, measure=measure)
    assert measure.calls == ["C"]  # once for six trials of one architecture
    assert first.seconds == pytest.approx(6 * 10 * 28_709 * 0.01 / 2)
    again = forecast(work, cache, backend="tensorflow", jobs=2, measure=measure)
    assert measure.calls == ["C"] and again.seconds == first.seconds
    stored = json.loads(cache.path.read_text())
    assert stored[pace_key("tensorflow", "C", 64, SHORT_FIT)]["how"] == "4 batches of a short fit"
    line = forecast_line(budget_reason("quick", False, ["smoke", "quick", "thesis"]), first)
    assert line.startswith(
        "budget quick (default; BUDGET=smoke|quick|thesis to choose) · "
        "6 trials left × 10 epochs · forecast 2 h 24 min on this machine "
        "(tensorflow, "
    )
    assert "pace of C measured 2026-12-04 13:40 UTC, 4 batches of a short fit) over 2 jobs" in line


def test_finished_epochs_replace_the_short_fit_for_their_own_training_set_size(tmp_path):
    cache = PaceCache(tmp_path)
    config = load_config(arch="C", batch_size=64)
    cache.put(pace_key("tensorflow", "C", 64, SHORT_FIT), Pace(0.01, "2026-12-04T13:40", "fit"))
    cache.record_epochs(
        pace_key("tensorflow", "C", 64, 28_709),
        [900.0, 1200.0, 1100.0],
        28_709,
        "trial 3 of dropout-quick",
    )
    full = forecast([Work(config, 2, 28_709)], cache, backend="tensorflow", measure=None)
    assert full.seconds == pytest.approx(2 * 1100.0)  # the median epoch, validation included
    assert full.paces["C"].how == "median of 3 finished epoch(s) of trial 3 of dropout-quick"
    smoke = forecast([Work(config, 2, 300)], cache, backend="tensorflow", measure=None)
    assert smoke.seconds == pytest.approx(2 * 300 * 0.01)  # a 300-image epoch is not scaled
    # A finished trial's time outside its epochs (build, MLflow, evaluation) counts too.
    cache.record_overhead(pace_key("tensorflow", "C", 64, 300), 20.0, "trial 1 of x")
    smoke = forecast([Work(config, 2, 300)] * 2, cache, backend="tensorflow", measure=None)
    assert smoke.seconds == pytest.approx(2 * (2 * 300 * 0.01 + 20.0))
    assert "; 40 s outside epochs, from finished trials)" in forecast_line("budget smoke", smoke)


def test_without_a_pace_and_without_measuring_the_forecast_says_so(tmp_path):
    config = load_config(arch="A")
    f = forecast([Work(config, 10, 100)], PaceCache(tmp_path), backend="jax", measure=None)
    assert f.seconds is None
    assert "forecast unknown: no pace of A on this machine (jax, " in forecast_line("budget x", f)
    assert summary_line(None, 75) == "forecast unknown, actual 1 min"
    assert summary_line(3600 * 3 + 20 * 60, 40) == "forecast 3 h 20 min, actual 40 s"


class Scripted(Runner):
    def __init__(self, script):
        self.script, self.n = script, 0

    def run(self, attempt, trial):
        self.n += 1
        return self.script(self.n)


def test_the_work_left_skips_finished_trials_and_a_resume_trains_only_its_rest(tmp_path, spec):
    settings = Settings.resolve(store_dir=tmp_path / "mlruns", environ={})
    study = create_or_resume(
        spec, settings, budget="smoke", storage=optuna.storages.InMemoryStorage()
    )
    plan = make_plan(spec, "smoke")
    assert [w.epochs for w in sweep_work(plan, study.get_trials(), total_images=28_709)] == [2] * 3
    stop = threading.Event()

    def script(n):
        if n == 1:
            return AttemptReport(Outcome.COMPLETE, value=0.5)
        stop.set()
        return AttemptReport(Outcome.INTERRUPTED, reason="stop", attrs={STOPPED_AFTER_EPOCH: 1})

    loaded, splan = load_for_worker(study.study_name, study._storage)
    Worker(loaded, splan, Scripted(script), max_retries=1, stop_event=stop).run()
    left = sweep_work(plan, study.get_trials(), total_images=28_709)
    assert sorted(w.epochs for w in left) == [1, 2]  # trial 0 done; trial 1 after its epoch 1
    assert {w.images for w in left} == {300}  # the smoke budget's subset
    smaller = dataclasses.replace(plan, n_trials=2)  # a --n-trials below the grid's size
    assert [w.epochs for w in sweep_work(smaller, (), total_images=28_709)] == [2, 2]


def test_several_seeds_multiply_the_work_and_a_trial_stopped_in_seed_1_keeps_seed_0(tmp_path, spec):
    settings = Settings.resolve(store_dir=tmp_path / "mlruns", environ={})
    study = create_or_resume(
        spec, settings, budget="smoke", seeds=3, storage=optuna.storages.InMemoryStorage()
    )
    plan = make_plan(spec, "smoke")
    fresh = sweep_work(plan, study.get_trials(), total_images=28_709, seeds=3)
    assert [(w.epochs, w.seeds) for w in fresh] == [(6, 3)] * 3  # 3 seeds of 2 epochs
    stop = threading.Event()

    def script(n):
        stop.set()  # stopped after epoch 1 of seed 1: seed 0's 2 epochs and 1 more are done
        attrs = {STOPPED_AFTER_EPOCH: 1, STOPPED_IN_SEED: 1}
        return AttemptReport(Outcome.INTERRUPTED, reason="stop", attrs=attrs)

    loaded, splan = load_for_worker(study.study_name, study._storage)
    Worker(loaded, splan, Scripted(script), max_retries=1, stop_event=stop).run()
    left = sweep_work(plan, study.get_trials(), total_images=28_709, seeds=3)
    assert sorted(w.epochs for w in left) == [3, 6, 6]
    cache = PaceCache(tmp_path)
    f = forecast(left, cache, backend="tensorflow", jobs=1, measure=Measure())
    assert f.seconds == pytest.approx(15 * 300 * 0.01)
    assert "3 trials left × 3-6 epochs (3 seeds each)" in forecast_line("budget smoke", f)


def test_a_trial_publishes_its_epoch_and_prints_a_line_per_epoch():
    now = [1000.0]
    published, epochs = [], []
    out = io.StringIO()
    bar = TrialProgress(
        "trial 3",
        epochs=2,
        steps=10,
        batch_size=64,
        publish=published.append,
        epoch_done=epochs.append,
        lines=True,
        clock=lambda: now[0],
    )
    with contextlib.redirect_stdout(out):
        bar.on_epoch_begin(0)
        for b in range(4):
            now[0] += 2.0
            bar.on_train_batch_end(b)
        bar.on_epoch_end(0, {"loss": 1.5, "val_accuracy": 0.25})
    assert len(published) == 1  # at 6 s, not at every batch
    state = published[0]
    assert (state["batch"], state["steps"], state["images_per_s"]) == (3, 10, 32.0)
    assert epochs == [[8.0]]
    assert out.getvalue() == (
        "trial 3 epoch 1/2  loss 1.5000 val_accuracy 0.2500  8 s  ETA of the trial 8 s\n"
    )

    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr(EPOCH_PROGRESS, state)
    # 7 batches of 64 images at 32 images/s, published 4 s ago: 10 s to go.
    message = epoch_end_message(study.get_trials(), now=state["at"] + 4)
    assert message == (
        "the current epoch ends in about 10 s (trial 0: batch 3/10, "
        "32 images/s, epoch ends in 10 s)"
    )
    from fer_sweep.lifecycle._processes import stop_message

    said = stop_message(lambda: message)
    assert "stopping after the current epoch: the current epoch ends in about 10 s" in said
    assert "the next run resumes it first" in stop_message(None)


def test_the_live_eta_uses_this_sweeps_finished_epochs_not_attempt_durations():
    study = optuna.create_study()
    for seconds in ([100.0, 300.0], [200.0]):
        trial = study.ask()
        trial.set_user_attr(EPOCH_SECONDS, seconds)
        study.tell(trial, state=TrialState.FAIL)  # cut short: its epochs still count
    view = StudyView(
        study,
        n_trials=3,
        epochs=10,
        jobs=2,
        epochs_left=lambda trials: 12,
        console=Console(file=io.StringIO()),
    )
    assert view.eta(study.get_trials(), 0.0) == (
        "20 min for 12 more epoch(s) at this sweep's 200 s an epoch (median of 3)"
    )
    fresh = optuna.create_study()
    ahead = StudyView(
        fresh,
        n_trials=3,
        epochs=10,
        jobs=1,
        epochs_left=lambda trials: 30,
        forecast_seconds=3600,
        console=Console(file=io.StringIO()),
    )
    assert ahead.eta([], ahead.started + 600) == (
        "50 min by the forecast (no epoch of this sweep finished yet)"
    )


def test_reproduce_forecasts_the_runs_not_finished_with_their_whole_length(tmp_path, synthetic_csv):
    from fer_sweep.data import load_dataset
    from fer_sweep.reporting import RESULT_FILE, work_left
    from fer_sweep.reporting._reproduction_folders import workdir

    dataset = load_dataset(synthetic_csv)
    done = workdir(tmp_path, "thesis-top1", 0)
    done.mkdir(parents=True)
    (done / RESULT_FILE).write_text("{}")
    left = work_left(tmp_path, dataset, ("thesis-top1",), (0, 1), None)
    assert [(w.config.seed, w.epochs, w.images) for w in left] == [(1, 80, 70)]
    short = work_left(tmp_path, dataset, ("thesis-top1",), (1,), 3)
    assert [w.epochs for w in short] == [3]


def test_the_live_view_shows_where_a_running_trial_is_inside_its_epoch():
    study = optuna.create_study()
    trial = study.ask()
    trial.report(0.3125, step=1)
    state = {
        "epoch": 2,
        "batch": 120,
        "steps": 449,
        "batch_size": 64,
        "images_per_s": 64.0,
        "at": time.time(),
    }
    trial.set_user_attr(EPOCH_PROGRESS, state)
    out = io.StringIO()
    view = StudyView(study, n_trials=1, epochs=10, jobs=1, console=Console(file=out, width=200))
    view.live.console.print(view.render())
    shown = out.getvalue()
    assert (
        "epoch 1/10  PublicTest 0.3125; epoch 2: batch 120/449, 64 images/s, epoch ends in" in shown
    )
