"""``fer_sweep ui``: the server's process tree stops whole, and the link lands on the runs."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fer_sweep import ui
from fer_sweep.errors import UserError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((ui.HOST, 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc), however deep."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# A stand-in for `mlflow ui`: a server process with worker children and a grandchild, the
# server listening on the port, all of them ignoring nothing but SIGTERM's default.
TREE = textwrap.dedent(
    """
    import socket, subprocess, sys, time
    port = int(sys.argv[1])
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    middle = [sys.executable, "-c",
              "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(600)",
              *sleeper]
    kids = [subprocess.Popen(sleeper), subprocess.Popen(sleeper), subprocess.Popen(middle)]
    sock = socket.socket(); sock.bind(("127.0.0.1", port)); sock.listen()
    print("listening", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_whole_server_tree_and_frees_the_port():
    port = free_port()
    seen: set[int] = set()
    before = signal.getsignal(signal.SIGTERM)

    def watch_then_terminate():
        # Wait until the whole stand-in tree is up and listening, then stop us as `kill` would.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen.update(descendants(os.getpid()))
            if len(seen) >= 5 and not ui.port_is_free(port):
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_then_terminate, daemon=True).start()
    code = ui.serve([sys.executable, "-c", TREE, str(port)], port=port)
    left = [p for p in seen if alive(p)]
    for pid in left:  # a failing run must not leave its sleepers behind
        os.kill(pid, signal.SIGKILL)
    assert code == 128 + signal.SIGTERM
    assert len(seen) >= 5  # server, three children, one grandchild
    assert not left
    assert ui.port_is_free(port)
    # Our own SIGTERM handling is back to what it was.
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_busy_port_is_one_clear_error():
    with socket.socket() as sock:
        sock.bind((ui.HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .* in use"):
            ui.serve([sys.executable, "-c", "pass"], port=port)


def test_the_link_opens_the_runs_not_the_genai_home():
    assert ui.landing_url(5000) == (
        "http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
    )


def test_the_job_runner_is_off_unless_the_environment_asks_for_it():
    assert ui.server_env({})[ui.JOB_RUNNER_ENV] == "false"
    assert ui.server_env({ui.JOB_RUNNER_ENV: "true"})[ui.JOB_RUNNER_ENV] == "true"
    cmd = ui.mlflow_command("sqlite:////x/mlflow.db", 5001, ui.DEFAULT_WORKERS, None)
    assert cmd[cmd.index("--workers") + 1] == "1" and "--default-artifact-root" not in cmd
