"""Many machines, on one: a real PostgreSQL and MLflow server on loopback, both with
authentication as ``make services`` starts them, a study created once, two workers joining it,
one killed mid-trial and replaced by a third with an empty disk.

A client without the credentials is refused by the database and by the tracking server; the
workers get theirs from the environment (``PGPASSWORD``, ``MLFLOW_TRACKING_USERNAME`` /
``_PASSWORD``, the URLs in ``FER_SWEEP_STORAGE`` / ``MLFLOW_TRACKING_URI``), so ``ps -ef``
shows no password while they run. Each worker has its own FER_SWEEP_STORE (its "disk"), so
the killed trial's retry can only resume through the checkpoint the dead worker uploaded to
the MLflow server. Installs PostgreSQL with apt-get when it is missing (as root, as CI is);
skipped only where neither the binaries nor apt are available.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from fer_sweep.lifecycle import open_storage
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect
from fer_sweep.tracking._checkpoints import CHECKPOINT_TAG
from fer_sweep.training import checkpoint_epoch
from tools import services

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


@pytest.fixture
def credentials(stack, monkeypatch) -> dict[str, str]:
    """What ``source .services/env`` exports: the two URLs and the two secrets, set in this
    process's environment too (the test's own storage and MLflow client need them)."""
    values = services.read_env(Path(stack.dir))
    assert set(values) == {
        "FER_SWEEP_STORAGE",
        "MLFLOW_TRACKING_URI",
        "PGPASSWORD",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }
    assert (Path(stack.dir) / services.ENV_FILE).stat().st_mode & 0o777 == 0o600
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def stranger(tmp_path: Path, **given: str) -> dict[str, str]:
    """The environment of a client given none of the credentials (only ``given``): no
    password variables, no ~/.pgpass, no ~/.mlflow/credentials."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update(HOME=str(tmp_path), PGPASSFILE=str(tmp_path / "no-pgpass"), **given)
    return env


SECRET_VARIABLES = ("PGPASSWORD", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def fer_sweep(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fer_sweep", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The command's only output line on stderr that matters: exit 2, one error, no traceback."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    return line


def test_database_refuses_a_client_without_the_password(stack, credentials, tmp_path, monkeypatch):
    import psycopg2

    monkeypatch.delenv("PGPASSWORD")  # libpq would read it
    where = {
        "host": "127.0.0.1",
        "port": stack.pg_port,
        "user": services.PG_USER,
        "dbname": "optuna",
        "connect_timeout": 10,
    }
    stranger_env = stranger(tmp_path)
    # libpq itself: no password, then a wrong one; the right one gets in.
    for password, refusal in (
        (None, "no password supplied"),
        ("wrong-password", "password authentication failed"),
    ):
        with pytest.raises(psycopg2.OperationalError, match=refusal):
            psycopg2.connect(**where, password=password, passfile=stranger_env["PGPASSFILE"])
    psycopg2.connect(**where, password=credentials["PGPASSWORD"]).close()
    # The CLI: one error line that says why, for the storage URL alone and for a wrong
    # password in the URL (which the line masks).
    storage = credentials["FER_SWEEP_STORAGE"]
    no_password = one_error_line(
        fer_sweep(tmp_path, "best", env={**stranger_env, "FER_SWEEP_STORAGE": storage})
    )
    assert f"Optuna storage {storage} refused the connection" in no_password
    assert "no password supplied" in no_password and "PGPASSWORD" in no_password
    wrong = storage.replace(f"{services.PG_USER}@", f"{services.PG_USER}:wrong-password@")
    line = one_error_line(fer_sweep(tmp_path, "best", "--storage", wrong, env=stranger_env))
    assert "password authentication failed" in line
    assert "wrong-password" not in line and f"{services.PG_USER}:***@" in line
    print(f"\nrefused by the database, no password: {no_password}\nwrong password: {line}")


def test_tracking_server_refuses_a_client_without_credentials(stack, credentials, tmp_path):
    search = f"{stack.tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    user = credentials["MLFLOW_TRACKING_USERNAME"]

    def status(password: str | None) -> int:
        request = urllib.request.Request(search)
        if password is not None:
            token = b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status
        except urllib.error.HTTPError as err:
            return err.code

    assert status(None) == 401
    assert status("wrong-password") == 401
    assert status(credentials["MLFLOW_TRACKING_PASSWORD"]) == 200
    # The CLI with the database's password but not the tracking server's credentials.
    spec = tmp_path / "dist.yaml"
    spec.write_text(SPEC)
    env = stranger(
        tmp_path,
        PGPASSWORD=credentials["PGPASSWORD"],
        FER_SWEEP_STORAGE=credentials["FER_SWEEP_STORAGE"],
        MLFLOW_TRACKING_URI=stack.tracking_uri,
    )
    line = one_error_line(fer_sweep(tmp_path, "study", "create", str(spec), env=env))
    assert f"MLflow tracking server {stack.tracking_uri} refused the connection (401" in line
    assert "MLFLOW_TRACKING_USERNAME" in line
    print(f"\nrefused by the tracking server: {line}")


def cli(tmp_path: Path, name: str, *args: str, store: Path) -> tuple[subprocess.Popen, Path]:
    """A worker process; it finds the URLs and the credentials in the environment."""
    log = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "FER_SWEEP_STORE": str(store),
        "FER_SWEEP_HEARTBEAT": "2",
        "FER_SWEEP_GRACE": str(GRACE),
        "TF_NUM_INTRAOP_THREADS": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fer_sweep", *args],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return proc, log


def secrets_in_command_lines(secrets: list[str]) -> tuple[list[str], list[str]]:
    """``ps -ef`` now: the lines that show one of ``secrets``, and all lines.

    ``ww`` and no ``COLUMNS``: ps cuts each line at $COLUMNS otherwise, and a password past
    the cut would go unseen."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    lines = subprocess.run(
        ["ps", "-efww"], capture_output=True, text=True, timeout=30, check=True, env=env
    ).stdout.splitlines()
    return [line for line in lines if any(s in line for s in secrets)], lines


def test_workers_with_the_credentials_finish_the_study_one_killed(
    stack, credentials, tmp_path, fer_csv
):
    started = time.time()
    spec = tmp_path / "dist.yaml"
    spec.write_text(SPEC)
    create = fer_sweep(tmp_path, "study", "create", str(spec), env=dict(os.environ))
    assert create.returncode == 0, create.stderr
    assert create.stdout.strip().splitlines()[-1] == STUDY

    # No --storage, no --tracking-uri: URLs and secrets come from the environment.
    join = ["worker", "--study", STUDY, "--data", str(fer_csv), "--threads", "1"]
    secrets = [credentials["PGPASSWORD"], credentials["MLFLOW_TRACKING_PASSWORD"]]
    procs: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for name in ("a", "b"):
            procs[name] = cli(tmp_path, f"worker-{name}", *join, store=tmp_path / name)
        # Kill worker a once its trial's first checkpoint is on the server.
        work_a = tmp_path / "a" / "work"  # folders keyed by the study: STUDY-<key>/trial-NNNN
        storage = open_storage(Settings.resolve(storage=stack.storage))
        client = connect(stack.tracking_uri)
        killed_trial, deadline = None, time.time() + 400
        while killed_trial is None and time.time() < deadline:
            assert procs["a"][0].poll() is None, procs["a"][1].read_text()[-3000:]
            for folder in work_a.glob(f"{STUDY}-*/trial-*"):
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
        # Both workers are training, the servers serving them: no password in any command line.
        leaked, ps_lines = secrets_in_command_lines(secrets)
        # This test's own processes, by pid and folder: ps lists the whole machine's, where
        # another checkout's test may run workers of the same study name.
        pids = {str(procs[name][0].pid) for name in ("a", "b")}
        running = {
            "worker": [x for x in ps_lines if x.split()[1] in pids and " worker --study " in x],
            "mlflow server": [
                x for x in ps_lines if "--app-name basic-auth" in x and stack.dir in x
            ],
            "postgres": [x for x in ps_lines if f"-p {stack.pg_port}" in x and stack.dir in x],
        }
        assert leaked == [], leaked
        assert len(running["worker"]) == 2 and running["mlflow server"] and running["postgres"]
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
    ran_retry = (
        "b" if any((tmp_path / "b" / "work").glob(f"{STUDY}-*/trial-{killed_trial:04d}")) else "c"
    )
    print(
        f"\ndistributed: {len(trials)} trials ({len(complete)} complete, 1 killed) in "
        f"{elapsed:.0f} s; trial {killed_trial} killed on worker a, retried as trial "
        f"{retry.number} on worker {ran_retry}, resumed from epoch {resumed}"
    )
    print(
        f"ps -ef while workers a and b trained: {len(ps_lines)} processes, none showing "
        f"either password; among them:"
    )
    for what, lines in running.items():
        print(f"  {what}: {lines[0][:200]}")
