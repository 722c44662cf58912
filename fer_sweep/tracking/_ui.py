"""The ``ui`` command: MLflow's UI on the local store, started and stopped as one unit.

``mlflow ui`` is a tree of processes: the ``mlflow`` CLI, the uvicorn server it spawns with its
workers, and a job runner. Killing only the top one (what a plain ``kill`` or a service manager
does) leaves the rest holding the port. So the tree runs in a process group of its own, and
stopping ``fer_sweep ui`` (Ctrl-C, SIGTERM, SIGHUP) stops the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from fer_sweep.errors import UserError

HOST = "127.0.0.1"
# MLflow's own default is 4 uvicorn workers. Each one imports MLflow's whole server at start:
# on a 2-core machine four of them (and the job runner) took 55 s before the first page. One
# person browsing one local store is served well by one worker (requests run on its threads).
DEFAULT_WORKERS = 1
# MLflow 3 opens in its GenAI mode (traces, no runs) unless the link asks for model training.
# Only the page the link opens: the experiments list's own links to each experiment do not
# carry it, so on a server without fer_sweep's page (a remote one) a click on a study there
# still lands on its GenAI overview.
RUNS_FRAGMENT = "#/experiments?workflowType=machine_learning"
# The MLflow app `fer_sweep ui` runs (pyproject.toml's `mlflow.app` entry point) and its page
# that makes the list's links open a study's runs too (fer_sweep/tracking/_ui_app.py).
APP_NAME = "fer-sweep"
APP_FACTORY = "fer_sweep.tracking._ui_app:create_app"
APP_GROUP = "mlflow.app"
OPEN_PATH = "/fer-sweep/open"
# MLflow's job runner (7 huey consumers, each importing MLflow) serves GenAI jobs: scorers,
# prompt optimisation, trace roll-ups. A sweep's store has none, and on 2 cores starting it
# delays the first page; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true in the environment keeps it.
JOB_RUNNER_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
STOP_SECONDS = 15
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def landing_url(port: int, host: str = HOST) -> str:
    """The link to MLflow's experiments list, from which a click on a study opens its runs
    (not its GenAI overview) with the study's saved view: ``fer_sweep.tracking._ui_app``'s page."""
    return f"http://{host}:{port}{OPEN_PATH}"


def study_url(port: int, experiment_id: str, host: str = HOST) -> str:
    """The link to a study's runs with its saved view, through the same page."""
    return f"{landing_url(port, host)}?experiment={experiment_id}"


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on ``port`` now (as uvicorn does, with SO_REUSEADDR:
    connections of a server that just stopped, in TIME_WAIT, do not hold the port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def mlflow_command(uri: str, port: int, workers: int, artifact_root: str | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        uri,
        "--app-name",
        APP_NAME,
    ]
    if artifact_root:
        cmd += ["--default-artifact-root", artifact_root]
    return cmd


def server_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``mlflow ui``: the job runner off unless asked for."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault(JOB_RUNNER_ENV, "false")
    return env


def app_installed() -> bool:
    """Whether MLflow finds :data:`APP_NAME` among its apps (the package metadata's entry
    point, written by ``pip install``)."""
    from importlib.metadata import entry_points

    return any(e.name == APP_NAME for e in entry_points(group=APP_GROUP))


@contextlib.contextmanager
def app_registered(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """``env`` in which ``mlflow ui --app-name fer-sweep`` finds the app.

    As it is when the entry point is installed. Otherwise (a checkout run without
    ``pip install -e .`` since the entry point came, or on ``PYTHONPATH``) with a folder on
    ``PYTHONPATH`` that holds only that entry point's metadata, as ``pip install`` would write
    it, for as long as the server runs: MLflow offers ``--app-name`` for entry points alone.
    """
    if app_installed():
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="fer-sweep-mlflow-app-") as folder:
        info = Path(folder) / "fer_sweep_mlflow_app-0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: fer-sweep-mlflow-app\nVersion: 0\n"
        )
        (info / "entry_points.txt").write_text(f"[{APP_GROUP}]\n{APP_NAME} = {APP_FACTORY}\n")
        path = [folder, env["PYTHONPATH"]] if env.get("PYTHONPATH") else [folder]
        yield {**env, "PYTHONPATH": os.pathsep.join(path)}


def wait_until_answering(url: str, proc: subprocess.Popen, timeout: float) -> float | None:
    """Seconds until ``url`` answers 200, or None if ``proc`` exits or ``timeout`` passes first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                if reply.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return None


def can_open_browser() -> bool:
    """Whether a browser window could appear: a desktop session, and a browser Python knows."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False  # a server or container: a text browser would take over this terminal
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def stop_group(proc: subprocess.Popen, timeout: float = STOP_SECONDS) -> None:
    """SIGTERM the process group of ``proc``; SIGKILL whatever is still in it after ``timeout``."""
    pgid = proc.pid  # the group leader: started with start_new_session
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so that only live members keep the group alive
        if not _group_alive(pgid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def serve(
    cmd: list[str],
    *,
    port: int,
    env: dict[str, str] | None = None,
    on_ready: Callable[[float], None] | None = None,
    ready_timeout: float = 600,
) -> int:
    """Run ``cmd`` (an MLflow server on ``port``) until it exits or this process is told to stop.

    Returns the exit code: the server's own, or 128 + the signal that stopped us.
    """
    if not port_is_free(port):
        raise UserError(f"port {port} on {HOST} is in use (another MLflow UI?); pass --port")
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise _Stop(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    proc = None
    try:
        # Its own session: the terminal's Ctrl-C reaches only us, and we stop the whole group.
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        if on_ready is not None:
            threading.Thread(
                target=lambda: _report_ready(proc, port, on_ready, ready_timeout), daemon=True
            ).start()
        return proc.wait()
    except (_Stop, KeyboardInterrupt):
        signum = received[0] if received else signal.SIGINT
        return 128 + signum
    finally:
        if proc is not None:
            # Ignore further signals while the group stops: a second Ctrl-C must not leave
            # workers behind either.
            for s in STOP_SIGNALS:
                signal.signal(s, signal.SIG_IGN)
            stop_group(proc)
        for s, h in previous.items():
            signal.signal(s, h)


def _report_ready(proc, port: int, on_ready: Callable[[float], None], timeout: float) -> None:
    seconds = wait_until_answering(f"http://{HOST}:{port}/health", proc, timeout)
    if seconds is not None:
        on_ready(seconds)
