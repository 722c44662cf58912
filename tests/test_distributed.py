"""Many machines, on one: a real PostgreSQL and MLflow server on loopback, a study created once,
two workers joining it, one killed mid-trial and replaced by a third with an empty disk.

Each worker has its own FER_SWEEP_STORE (its "disk"), so the killed trial's retry can only
resume through the checkpoint the dead worker uploaded to the MLflow server. Installs
PostgreSQL with apt-get when it is missing (as root, as CI is); skipped only where neither
the binaries nor apt are available.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fer_sweep import services
from fer_sweep.settings import Settings
from fer_sweep.storage import open_storage
from fer_sweep.tracking import CHECKPOINT_TAG, connect
from fer_sweep.train import checkpoint_epoch

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ARMS = 3
EPOCHS = 4
GRACE = 10
SPEC = """\
name: dist
description: three dropout arms across workers
base: {arch: C, batch_size: 32, checkpoint_every: 1, optimizer: adam, lr: 1.0e-3}
space:
  dropout:
    type: categorical
    choices:
      "0.25/0.5": {conv_dropout: 0.25, fc_dropout: 0.5}
      "0.3 all": {conv_dropout: 0.3, fc_dropout: 0.3}
      "off": {conv_dropout: 0.0, fc_dropout: 0.0}
sampler: grid
budgets: {tiny: {subset: 60, epochs: 4}}
default_budget: tiny
"""
STUDY = "dist-tiny"


@pytest.fixture(scope="module")
def stack():
    """PostgreSQL + MLflow server on free loopback ports, stopped and removed afterwards."""
    if services.postgres_bin() is None:
        if not services.can_install():
            pytest.skip("PostgreSQL is not installed and apt-get (as root) is not available")
        services.install_postgres()
    # Not under pytest's 0700 tmp folder: as root the cluster runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="fer-sweep-services-"))
    root.chmod(0o755)
    try:
        svc = services.start(root)
    except BaseException:
        services.stop(root)
        shutil.rmtree(root, ignore_errors=True)
        raise
    yield svc
    services.stop(root)
    shutil.rmtree(root, ignore_errors=True)


def cli(tmp_path: Path, name: str, *args: str, store: Path) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "FER_SWEEP_STORE": str(store), "FER_SWEEP_HEARTBEAT": "2",
           "FER_SWEEP_GRACE": str(GRACE), "TF_NUM_INTRAOP_THREADS": "1"}  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fer_sweep", *args], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    return proc, log


def test_two_workers_one_killed_every_trial_complete_once(stack, tmp_path, fer_csv):
    started = time.time()
    spec = tmp_path / "dist.yaml"
    spec.write_text(SPEC)
    where = ["--storage", stack.storage, "--tracking-uri", stack.tracking_uri]
    create = subprocess.run([sys.executable, "-m", "fer_sweep", "study", "create", str(spec),
                             *where], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)  # fmt: skip
    assert create.returncode == 0, create.stderr
    assert create.stdout.strip().splitlines()[-1] == STUDY

    join = ["worker", "--study", STUDY, *where, "--data", str(fer_csv), "--threads", "1"]
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for name in ("a", "b"):
            procs[name] = cli(tmp_path, f"worker-{name}", *join, store=tmp_path / name)
        # Kill worker a once its trial's first checkpoint is on the server.
        work_a = tmp_path / "a" / "work" / STUDY
        storage = open_storage(Settings.resolve(storage=stack.storage))
        client = connect(stack.tracking_uri)
        killed_trial, deadline = None, time.time() + 400
        while killed_trial is None and time.time() < deadline:
            assert procs["a"][0].poll() is None, procs["a"][1].read_text()[-3000:]
            for folder in work_a.glob("trial-*"):
                if checkpoint_epoch(folder) < 1:
                    continue
                number = int(folder.name.split("-")[1])
                trial = optuna.load_study(study_name=STUDY, storage=storage).trials[number]
                run_id = trial.user_attrs.get("mlflow_run_id")
                uploaded = run_id and client.get_run(run_id).data.tags.get(CHECKPOINT_TAG)
                if trial.state == TrialState.RUNNING and uploaded:
                    killed_trial = number
            time.sleep(0.2)
        assert killed_trial is not None, procs["a"][1].read_text()[-3000:]
        procs["a"][0].send_signal(signal.SIGKILL)
        procs["a"][0].wait()
        # A replacement machine with an empty disk joins; b keeps going.
        procs["c"] = cli(tmp_path, "worker-c", *join, store=tmp_path / "c")
        for name in ("b", "c"):
            proc, log = procs[name]
            assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.time() - started

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    # Every point of the grid is complete exactly once.
    assert sorted(t.params["dropout"] for t in complete) == ["0.25/0.5", "0.3 all", "off"]
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert killed.number == killed_trial
    (retry,) = [t for t in complete if t.system_attrs.get("failed_trial") == killed_trial]
    resumed = retry.user_attrs["resumed_from_epoch"]
    assert 1 <= resumed <= EPOCHS
    # Every trial has its run in MLflow, with the status that matches.
    for t in trials:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.data.tags["optuna.trial"] == str(t.number)
        expected = "FINISHED" if t.state == TrialState.COMPLETE else "KILLED"
        assert run.info.status == expected, (t.number, run.info.status)
    retry_run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert retry_run.data.tags["fer_sweep.resumed_from_epoch"] == str(resumed)
    assert retry_run.data.tags["fer_sweep.resumes_run"] == killed.user_attrs["mlflow_run_id"]
    ran_retry = "b" if (tmp_path / "b" / "work" / STUDY / f"trial-{killed_trial:04d}").exists() \
        else "c"  # fmt: skip
    print(f"\ndistributed: {len(trials)} trials ({len(complete)} complete, 1 killed) in "
          f"{elapsed:.0f} s; trial {killed_trial} killed on worker a, retried as trial "
          f"{retry.number} on worker {ran_retry}, resumed from epoch {resumed}")  # fmt: skip
