"""Tracking that fails costs logging, never a result, and never leaves a run RUNNING; a
checkpoint upload killed between two files leaves the previous checkpoint whole."""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import nullcontext

import optuna
import pytest

from fer_sweep import metric_names as names
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect, open_run
from fer_sweep.tracking._checkpoints import CHECKPOINT_TAG, CheckpointUploader, fetch_checkpoint
from fer_sweep.tracking._logging import EpochLogger
from fer_sweep.tracking._runs import TrackedRun
from fer_sweep.training import STATE_FILE, checkpoint_epoch, checkpoint_path


@pytest.fixture
def client():
    return connect(Settings.resolve().tracking_uri)


class Killed(BaseException):
    """The process dies here: nothing after it runs (not an Exception anyone catches)."""


class Flaky:
    """An MLflow client whose chosen calls fail; every other call goes to the real one."""

    def __init__(self, real, fail):
        self.real, self.fail = real, fail

    def __getattr__(self, name):
        call = getattr(self.real, name)
        if not callable(call):
            return call

        def wrapped(*args, **kwargs):
            self.fail(name, args, kwargs)
            return call(*args, **kwargs)

        return wrapped


def write_checkpoint(workdir, epoch):
    folder = checkpoint_path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_text(f"model after epoch {epoch}")
    (folder / "best.weights.h5").write_text(f"best weights up to epoch {epoch}")
    (folder / STATE_FILE).write_text(json.dumps({"state": {"epoch": epoch}}))


@pytest.mark.parametrize("files_before_the_kill", [1, 2])
def test_an_upload_killed_between_files_leaves_the_last_whole_checkpoint(
    client, tmp_path, files_before_the_kill
):
    run_id = client.create_run(client.create_experiment("ckpt")).info.run_id
    work = tmp_path / "dead-worker"
    write_checkpoint(work, 1)
    CheckpointUploader(TrackedRun(client, run_id), work).upload()

    write_checkpoint(work, 2)
    uploads = []

    def die_after_one_file(name, args, kwargs):
        if name == "log_artifact":
            uploads.append(args[1])
            if len(uploads) > files_before_the_kill:
                raise Killed

    uploader = CheckpointUploader(TrackedRun(Flaky(client, die_after_one_file), run_id), work)
    with pytest.raises(Killed):
        uploader.upload()

    # A retry on a machine with an empty disk gets epoch 1 whole: its model with its state.
    fresh = tmp_path / "retry"
    assert fetch_checkpoint(client, run_id, fresh) == 1
    assert (checkpoint_path(fresh) / "model.keras").read_text() == "model after epoch 1"
    assert checkpoint_epoch(fresh) == 1

    # The next complete upload moves the pointer and removes the superseded folder.
    write_checkpoint(work, 3)
    second = CheckpointUploader(TrackedRun(client, run_id), work)
    second.uploaded, second.uploaded_epoch = "checkpoints/epoch-0001", 1
    second.upload()
    assert client.get_run(run_id).data.tags[CHECKPOINT_TAG] == "checkpoints/epoch-0003"
    assert "checkpoints/epoch-0001" not in {
        a.path for a in client.list_artifacts(run_id, "checkpoints")
    }
    again = tmp_path / "retry-2"
    assert fetch_checkpoint(client, run_id, again) == 3
    assert (checkpoint_path(again) / "model.keras").read_text() == "model after epoch 3"


def test_a_tracking_error_with_an_empty_message_does_not_stop_training():
    class Down:
        def log_batch(self, *args, **kwargs):
            raise ConnectionError()  # str() of it is ''

    run = TrackedRun(Down(), "run-1")
    logger = EpochLogger(run)
    logger.on_epoch_end(0, {"loss": 1.5, "val_accuracy": 0.25})  # must not raise
    logger.on_epoch_end(1, {"loss": 1.4, "val_accuracy": 0.30})
    assert run.flush()  # the writes travel in the background; their failures are kept
    assert run.errors == ["epoch 1: ConnectionError", "epoch 2: ConnectionError"]


class Slow:
    """An MLflow client whose every call takes ``delay`` seconds (a far tracking server)."""

    def __init__(self, real, delay, fail_on_epoch=None):
        self.real, self.delay, self.fail_on_epoch = real, delay, fail_on_epoch
        self.threads = set()

    def __getattr__(self, name):
        call = getattr(self.real, name)
        if not callable(call):
            return call

        def slow(*args, **kwargs):
            self.threads.add(threading.current_thread())
            time.sleep(self.delay)
            steps = {m.step for m in kwargs.get("metrics", ())}
            if self.fail_on_epoch in steps:
                raise ConnectionError(f"server gone at epoch {self.fail_on_epoch}")
            return call(*args, **kwargs)

        return slow


def test_a_slow_tracking_server_does_not_hold_up_training_and_loses_no_epoch(client):
    run_id = client.create_run(client.create_experiment("slow")).info.run_id
    slow = Slow(client, delay=0.5)
    run = TrackedRun(slow, run_id)
    logger = EpochLogger(run)
    started = time.perf_counter()
    for epoch in range(4):
        logger.on_epoch_end(epoch, {"loss": 2.0 - epoch / 10, "val_accuracy": 0.2 + epoch / 10})
    handed_over = time.perf_counter() - started
    assert handed_over < 0.5  # four 0.5 s writes, none waited for by the training thread
    assert threading.current_thread() not in slow.threads
    assert run.flush()
    assert time.perf_counter() - started >= 4 * 0.5  # ...all of them done by the flush
    history = client.get_metric_history(run_id, names.PUBLIC_ACCURACY)
    assert [(m.step, round(m.value, 6)) for m in history] == [
        (1, 0.2),
        (2, 0.3),
        (3, 0.4),
        (4, 0.5),
    ]
    assert run.errors == []


def test_a_background_write_that_fails_is_noted_on_the_run_when_it_closes(client, capsys):
    run_id = client.create_run(client.create_experiment("gone")).info.run_id
    run = TrackedRun(Slow(client, delay=0.05, fail_on_epoch=2), run_id)
    logger = EpochLogger(run)
    for epoch in range(3):
        logger.on_epoch_end(epoch, {"loss": 1.0, "val_accuracy": 0.5})
    from fer_sweep.outcomes import Outcome

    run.close(Outcome.COMPLETE)  # waits for the writes first
    assert run.errors == ["epoch 2: server gone at epoch 2"]
    got = client.get_run(run_id)
    assert got.data.tags["fer_sweep.logging_errors"] == "epoch 2: server gone at epoch 2"
    assert [m.step for m in client.get_metric_history(run_id, names.PUBLIC_ACCURACY)] == [1, 3]
    assert "MLflow logging failed: epoch 2: server gone" in capsys.readouterr().err


def test_a_background_checkpoint_upload_keeps_its_epoch_while_training_goes_on(client, tmp_path):
    run_id = client.create_run(client.create_experiment("bg-ckpt")).info.run_id
    work = tmp_path / "w"
    write_checkpoint(work, 1)
    run = TrackedRun(Slow(client, delay=0.3), run_id)
    uploader = CheckpointUploader(run, work, background=True)
    started = time.perf_counter()
    uploader.on_epoch_begin(1)  # epoch 2 starts; epoch 1's checkpoint is on its way
    assert time.perf_counter() - started < 0.3
    # The trainer replaces its checkpoint folder whole at the end of epoch 2, mid-upload.
    shutil.rmtree(checkpoint_path(work))
    write_checkpoint(work, 2)
    assert run.flush() and run.errors == []
    fresh = tmp_path / "retry"
    assert fetch_checkpoint(client, run_id, fresh) == 1
    assert (checkpoint_path(fresh) / "model.keras").read_text() == "model after epoch 1"
    assert sorted(p.name for p in work.iterdir()) == ["checkpoint"]  # the staged links are gone
    uploader.upload()  # the checkpoint written on the way out
    assert run.flush()
    assert client.get_run(run_id).data.tags[CHECKPOINT_TAG] == "checkpoints/epoch-0002"
    # Links left by a worker killed mid-upload go when the next attempt starts.
    (work / ".upload-epoch-0002").mkdir()
    CheckpointUploader(run, work, background=True)
    assert sorted(p.name for p in work.iterdir()) == ["checkpoint"]


@pytest.mark.parametrize(
    ("raised", "status", "state"),
    [
        (None, "FINISHED", "COMPLETE"),
        (optuna.TrialPruned("pruned after epoch 2"), "KILLED", "PRUNED"),
        (KeyboardInterrupt(), "KILLED", "FAIL"),
        (RuntimeError("out of memory"), "FAILED", "FAIL"),
    ],
)
def test_the_run_status_follows_how_the_block_ended(client, raised, status, state):
    expected = pytest.raises(type(raised)) if raised else nullcontext()
    with expected, open_run(client, experiment="status", tags={"optuna.trial": "0"}) as run:
        if raised is not None:
            raise raised
    got = client.get_run(run.id)
    assert got.info.status == status and got.data.tags["optuna.state"] == state
    if raised is not None:
        assert got.data.tags["fer_sweep.error"] == (str(raised) or type(raised).__name__)


@pytest.mark.slow
def test_tracking_that_fails_before_training_costs_neither_the_result_nor_the_run(
    client, fer_dataset, tmp_path
):
    from fer_sweep.config import load_config
    from fer_sweep.tracking import tracked_train

    def no_tags(name, args, kwargs):
        if name == "set_tag" or (name == "log_batch" and kwargs.get("tags")):
            raise RuntimeError("tracking server answered 503")

    flaky = Flaky(client, no_tags)
    cfg = load_config(preset="thesis-top1", epochs=1, schedule="constant", batch_size=32)
    with open_run(flaky, experiment="flaky", config=cfg) as run:
        result = tracked_train(cfg, fer_dataset, run=run, workdir=tmp_path / "w", progress=False)
    assert result.epochs_trained == 1
    got = client.get_run(run.id)
    assert got.info.status == "FINISHED"  # closed, though no tag could be written
    assert got.data.metrics[names.PRIVATE_FINAL] == pytest.approx(result.test_final.accuracy)
    assert run.errors and all("503" in e for e in run.errors)


GRID = """
name: pair
base: {arch: C, epochs: 2}
space:
  fc_dropout: {type: categorical, choices: [0.0, 0.5]}
sampler: grid
default_budget: smoke
"""


def test_a_study_run_by_workers_alone_ends_with_the_study(tmp_path, client, fer_csv):
    from fer_sweep.lifecycle import create_or_resume, open_worker
    from fer_sweep.lifecycle._attempt import TrainingRunner
    from fer_sweep.lifecycle._worker import AttemptReport
    from fer_sweep.outcomes import Outcome
    from fer_sweep.search import load_sweep
    from fer_sweep.tracking import study_run

    class NoTraining(TrainingRunner):
        def run(self, attempt, trial):
            attrs = {names.PUBLIC_BEST: 0.5, names.PRIVATE_FINAL: 0.4}
            return AttemptReport(Outcome.COMPLETE, value=0.5, attrs=attrs)

    settings = Settings.resolve()
    (tmp_path / "pair.yaml").write_text(GRID)
    study = create_or_resume(load_sweep(tmp_path / "pair.yaml"), settings)
    parent = study_run(client, study, settings.artifact_root)  # what `study create` does
    assert client.get_run(parent).info.status == "SCHEDULED"

    def join(**kw):
        return open_worker(
            study.study_name, settings, data=str(fer_csv), runner=NoTraining.open, **kw
        )

    assert join(max_trials=1).run() == 1  # leaves with one of two trials done
    assert client.get_run(parent).info.status == "KILLED"
    assert join().run() == 1
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics[names.trial_count("complete")] == 2
    assert run.data.metrics[names.PRIVATE_FINAL] == 0.4
    assert run.data.metrics[names.percent_name(names.PRIVATE_FINAL)] == 40.0  # the table's


def test_a_finished_trials_work_folder_goes_unless_mlflow_missed_part_of_it():
    import threading

    from fer_sweep.lifecycle._attempt import MLFLOW_ERRORS, TrainingRunner
    from fer_sweep.lifecycle._study import work_folder

    settings = Settings.resolve()
    study = optuna.create_study(study_name="s", storage=optuna.storages.InMemoryStorage())
    study.set_user_attr("work_key", "k1")
    runner = TrainingRunner("s", settings, None, None, threading.Event(), "parent")
    runner.study = study
    for errors in ("", "final metrics: server gone"):
        trial = study.ask()
        if errors:
            trial.set_user_attr(MLFLOW_ERRORS, errors)
        study.tell(trial, 0.5)
        folder = settings.workdir(work_folder(study, trial.number))
        (folder / "checkpoint").mkdir(parents=True)
        runner.on_done(study.trials[trial.number])
        # Kept only when MLflow is missing some of what the attempt wrote.
        assert folder.exists() == bool(errors)
    assert settings.workdir("s-k1/trial-0000") == settings.workdir(work_folder(study, 0))


def test_percent_twins_are_the_once_per_run_accuracies_rounded_as_the_thesis_writes_them():
    got = names.with_percent(
        {names.PUBLIC_BEST: 0.24333333333333335, names.BEST_EPOCH: 3.0, names.PUBLIC_ACCURACY: 0.5}
    )
    assert got == {
        names.PUBLIC_BEST: 0.24333333333333335,
        names.BEST_EPOCH: 3.0,
        names.PUBLIC_ACCURACY: 0.5,
        "PublicTest/accuracy_best_pct": 24.33,
    }
    assert names.percent_name(names.PRIVATE_FINAL) == "PrivateTest/accuracy_final_pct"
    with pytest.raises(ValueError, match="no percent twin"):
        names.percent_name(names.PUBLIC_ACCURACY)  # a per-epoch curve stays a fraction


def test_a_finished_run_logs_its_accuracies_as_fractions_and_in_percent(client, tmp_path):
    from conftest import fake_result

    from fer_sweep.config import load_config
    from fer_sweep.tracking import final_metrics
    from fer_sweep.tracking._logging import log_result

    result = fake_result(load_config(overrides=["fc_dropout=0.3"]), tmp_path)
    with open_run(client, experiment="percent") as run:
        log_result(run, result)
    metrics = client.get_run(run.id).data.metrics
    fractions = final_metrics(result)
    # A network that sees all 48 px has no ten-crop numbers; every other twin is logged.
    cropped = {names.PRIVATE_FINAL_TENCROP, names.PRIVATE_AT_BEST_TENCROP}
    assert not cropped & set(metrics)
    for name in set(names.PERCENT_TWINS) - cropped:
        assert metrics[name] == fractions[name]
        assert metrics[names.percent_name(name)] == round(100 * fractions[name], 2)
    assert metrics["PrivateTest/accuracy_final_pct"] == 41.5
    assert not [k for k in metrics if k.endswith("_pct") and k.startswith("PrivateTest_per")]
