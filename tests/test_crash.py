"""Crashes for real: SIGKILL mid-trial, one and two Ctrl-C, stores that are down or go away
(a diverging trial: test_sweep.py, in process). Every sweep runs as a subprocess of the real
CLI on a tiny grid (60 images per split, 4 epochs, a checkpoint every epoch) with a 1 s
heartbeat and a 5 s grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fer_sweep import metric_names as names
from fer_sweep.lifecycle import open_storage
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect
from fer_sweep.training import checkpoint_epoch
from tools.services import MLFLOW_ADMIN, _kill_group, free_port, new_secret, start_mlflow

pytestmark = pytest.mark.slow

EPOCHS = 4
GRACE = 5
SPEC = """\
name: crash
description: two dropout arms, checkpointed every epoch
base: {{arch: C, batch_size: 32, checkpoint_every: 1, {base}}}
space:
  {space}
sampler: grid
budgets: {{tiny: {{subset: 60, epochs: {epochs}}}}}
default_budget: tiny
"""
DROPOUT = """dropout:
    type: categorical
    choices:
      "a": {conv_dropout: 0.25, fc_dropout: 0.5}
      "b": {conv_dropout: 0.0, fc_dropout: 0.0}"""
STUDY = "crash-tiny"


def write_spec(
    tmp_path: Path, *, base="optimizer: adam, lr: 1.0e-3", space=DROPOUT, epochs=EPOCHS
) -> Path:
    path = tmp_path / "crash.yaml"
    path.write_text(SPEC.format(base=base, space=space, epochs=epochs))
    return path


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "FER_SWEEP_HEARTBEAT": "1", "FER_SWEEP_GRACE": str(GRACE), **extra}


class Cli:
    """``python -m fer_sweep ...`` in the background, its output in a file."""

    def __init__(self, tmp_path: Path, *args: str, name: str = "sweep", **extra: str) -> None:
        self.log = tmp_path / f"{name}-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fer_sweep", *args],
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env(**extra),
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"still running after {timeout} s:\n{self.output[-3000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sweep(tmp_path: Path, spec: Path, data: Path, *more: str, **extra: str) -> Cli:
    return Cli(tmp_path, "sweep", str(spec), "--no-live", "--data", str(data), *more, **extra)


def workdir(trial: int) -> Path:
    """The trial's work folder (named by the study's name and its own token)."""
    found = sorted((Settings.resolve().store_dir / "work").glob(f"{STUDY}-*/trial-{trial:04d}"))
    return found[0] if found else Settings.resolve().workdir(f"{STUDY}-none/trial-{trial:04d}")


def wait_for_checkpoint(cli: Cli, trial: int, epoch: int = 1, timeout: float = 400) -> int:
    """Wait until ``trial`` has checkpointed at least ``epoch`` epochs; returns the epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = checkpoint_epoch(workdir(trial))
        if done >= epoch:
            return done
        if cli.proc.poll() is not None:
            pytest.fail(
                f"exited ({cli.proc.returncode}) before trial {trial} checkpointed:\n"
                f"{cli.output[-3000:]}"
            )
        time.sleep(0.1)
    cli.kill()
    pytest.fail(f"trial {trial} had no checkpoint after {timeout} s:\n{cli.output[-3000:]}")


def trials() -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(
        study_name=STUDY, storage=open_storage(Settings.resolve())
    ).get_trials()


def run_of(trial: optuna.trial.FrozenTrial, client=None):
    return (client or connect(Settings.resolve().tracking_uri)).get_run(
        trial.user_attrs["mlflow_run_id"]
    )


def one_error_line(output: str) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def spec(tmp_path):
    return write_spec(tmp_path)


@pytest.fixture
def cleanup():
    """Kills whatever a failed test leaves running."""
    started: list[Cli] = []
    yield started
    for cli in started:
        cli.kill()


def test_sigkill_mid_trial_is_retried_from_its_checkpoint(tmp_path, spec, fer_csv, cleanup):
    first = sweep(tmp_path, spec, fer_csv)
    cleanup.append(first)
    wait_for_checkpoint(first, trial=1)  # trial 0 is finished, trial 1 is the last one
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    killed_at = checkpoint_epoch(workdir(1))
    before = {t.number: t for t in trials()}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    client = connect(Settings.resolve().tracking_uri)
    assert run_of(before[1], client).info.status == "RUNNING"

    # The stale trial is the only one left: the next sweep must still find and retry it.
    time.sleep(GRACE + 1)
    second = sweep(tmp_path, spec, fer_csv)
    cleanup.append(second)
    assert second.wait(600) == 0, second.output
    assert "trial 1: its worker stopped beating" in second.output

    after = {t.number: t for t in trials()}
    assert [after[n].state for n in sorted(after)] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]
    retry = after[2]
    assert retry.system_attrs["failed_trial"] == 1
    assert retry.params == after[1].params
    assert retry.user_attrs["resumed_from_epoch"] == killed_at >= 1
    assert retry.user_attrs["epochs_trained"] == EPOCHS

    killed_run, retry_run = run_of(after[1], client), run_of(retry, client)
    assert killed_run.info.status == "KILLED"
    assert killed_run.data.tags["fer_sweep.end_reason"] == "lost"
    assert killed_run.data.tags["fer_sweep.error"] == "worker lost (no heartbeat)"
    assert killed_run.data.tags["fer_sweep.superseded_by_trial"] == "2"
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["fer_sweep.retry_of_trial"] == "1"
    assert retry_run.data.tags["fer_sweep.resumed_from_epoch"] == str(killed_at)
    steps = [
        m.step for m in client.get_metric_history(retry_run.info.run_id, names.PUBLIC_ACCURACY)
    ]
    assert steps == list(range(killed_at + 1, EPOCHS + 1))
    # What was finished before the kill is untouched.
    assert after[0].value == before[0].value
    assert run_of(after[0], client).info.status == "FINISHED"


def test_ctrl_c_stops_within_an_epoch_and_the_next_sweep_resumes(tmp_path, spec, fer_csv, cleanup):
    first = sweep(tmp_path, spec, fer_csv)
    cleanup.append(first)
    seen = wait_for_checkpoint(first, trial=0)
    first.proc.send_signal(signal.SIGINT)
    assert first.wait(180) == 130, first.output  # stopped on request: 130, as train exits
    assert "stopping after the current epoch" in first.output
    assert "stopped on request; the same command resumes it" in first.output
    assert "Traceback" not in first.output

    stopped = {t.number: t for t in trials()}
    assert stopped[0].state == TrialState.FAIL
    assert stopped[0].user_attrs["outcome"] == "interrupted"
    epoch = stopped[0].user_attrs["stopped_after_epoch"]
    assert seen <= epoch <= seen + 1 and epoch == checkpoint_epoch(workdir(0))
    assert run_of(stopped[0]).info.status == "KILLED"
    queued = [t for t in stopped.values() if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs.get("failed_trial", -1) for t in queued) == [-1, 0]

    second = sweep(tmp_path, spec, fer_csv)
    cleanup.append(second)
    assert second.wait(600) == 0, second.output
    done = [t for t in trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["dropout"] for t in done) == ["a", "b"]  # each point exactly once
    resumed = next(t for t in done if t.system_attrs.get("failed_trial") == 0)
    assert resumed.user_attrs["resumed_from_epoch"] == epoch


def test_second_ctrl_c_exits_at_once_and_both_stores_stay_usable(tmp_path, spec, fer_csv, cleanup):
    first = sweep(tmp_path, spec, fer_csv)
    cleanup.append(first)
    wait_for_checkpoint(first, trial=0)
    first.proc.send_signal(signal.SIGINT)
    # Signals that arrive while TensorFlow is in C code coalesce: press again after the answer.
    deadline = time.time() + 60
    while "stopping after the current epoch" not in first.output and time.time() < deadline:
        time.sleep(0.05)
    first.proc.send_signal(signal.SIGINT)
    start = time.time()
    assert first.wait(60) == 130, first.output
    assert time.time() - start < 30
    assert "interrupted" in first.output and "Traceback" not in first.output

    second = sweep(tmp_path, spec, fer_csv)
    cleanup.append(second)
    assert second.wait(600) == 0, second.output
    done = [t for t in trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["dropout"] for t in done) == ["a", "b"]
    client = connect(Settings.resolve().tracking_uri)
    for t in trials():
        # A trial queued again behind the interrupted one's resume never trained: no run.
        if t.user_attrs.get("outcome") == "skipped":
            assert "mlflow_run_id" not in t.user_attrs
            continue
        assert run_of(t, client).info.status != "RUNNING"
    ranking = subprocess.run(
        [sys.executable, "-m", "fer_sweep", "best", "--study", STUDY],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert ranking.returncode == 0, ranking.stderr


@pytest.mark.parametrize("store", ["storage", "tracking"])
def test_unreachable_store_is_one_line_before_training(tmp_path, spec, fer_csv, store):
    port = free_port()  # nothing listens there
    option = {
        "storage": ["--storage", f"postgresql://nobody@127.0.0.1:{port}/optuna"],
        "tracking": ["--tracking-uri", f"http://127.0.0.1:{port}"],
    }[store]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fer_sweep",
            "sweep",
            str(spec),
            "--no-live",
            "--data",
            str(fer_csv),
            *option,
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert "unreachable" in line and str(port) in line
    assert not (Settings.resolve().store_dir / "work").exists()  # no trial started


@pytest.fixture
def mlflow_server(tmp_path):
    root = tmp_path / "mlflow-server"
    root.mkdir()
    port = free_port()
    password = new_secret()  # the server asks for a user, as `make services` starts it
    backend = f"sqlite:///{root / 'mlflow.db'}"
    pid = start_mlflow(root, backend, port, admin_password=password, workers=1)
    yield f"http://127.0.0.1:{port}", pid, password
    _kill_group(pid)


def test_tracking_server_lost_mid_trial_still_reaches_optuna(
    tmp_path, fer_csv, mlflow_server, cleanup
):
    uri, pid, password = mlflow_server
    spec = write_spec(
        tmp_path, space=DROPOUT.replace('\n      "b": {conv_dropout: 0.0, fc_dropout: 0.0}', "")
    )
    cli = sweep(
        tmp_path,
        spec,
        fer_csv,
        "--tracking-uri",
        uri,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        MLFLOW_HTTP_REQUEST_TIMEOUT="30",  # every request checks a password hash: slow under load
        MLFLOW_TRACKING_USERNAME=MLFLOW_ADMIN,
        MLFLOW_TRACKING_PASSWORD=password,
    )
    cleanup.append(cli)
    wait_for_checkpoint(cli, trial=0)
    _kill_group(pid)
    assert cli.wait(600) == 0, cli.output
    (trial,) = trials()
    assert trial.state == TrialState.COMPLETE and trial.value is not None
    assert trial.user_attrs["epochs_trained"] == EPOCHS
    assert "warning: MLflow logging failed" in cli.output
    assert "the result itself is kept" in cli.output
    assert trial.user_attrs["mlflow_errors"]
