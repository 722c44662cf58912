"""``fer_sweep ui``: the server's process tree stops whole, and the link lands on the runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from fer_sweep.errors import UserError
from fer_sweep.tracking import (
    DEFAULT_WORKERS,
    app_registered,
    landing_url,
    mlflow_command,
    serve,
    server_env,
    study_url,
)
from fer_sweep.tracking import _ui as ui
from fer_sweep.tracking._ui import (
    APP_FACTORY,
    APP_GROUP,
    APP_NAME,
    HOST,
    JOB_RUNNER_ENV,
    OPEN_PATH,
    port_is_free,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
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
            if len(seen) >= 5 and not port_is_free(port):
                break
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch_then_terminate, daemon=True).start()
    code = serve([sys.executable, "-c", TREE, str(port)], port=port)
    left = [p for p in seen if alive(p)]
    for pid in left:  # a failing run must not leave its sleepers behind
        os.kill(pid, signal.SIGKILL)
    assert code == 128 + signal.SIGTERM
    assert len(seen) >= 5  # server, three children, one grandchild
    assert not left
    assert port_is_free(port)
    # Our own SIGTERM handling is back to what it was.
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_busy_port_is_one_clear_error():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .* in use"):
            serve([sys.executable, "-c", "pass"], port=port)


def test_the_links_go_through_fer_sweeps_page_of_the_mlflow_app_it_starts():
    assert landing_url(5000) == "http://127.0.0.1:5000/fer-sweep/open"
    assert study_url(5000, "7") == "http://127.0.0.1:5000/fer-sweep/open?experiment=7"
    cmd = mlflow_command("sqlite:////x/mlflow.db", 5001, 1, None)
    assert cmd[cmd.index("--app-name") + 1] == APP_NAME == "fer-sweep"


def test_pyproject_declares_the_app_the_command_names():
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    apps = project["project"]["entry-points"][APP_GROUP]
    assert apps == {APP_NAME: APP_FACTORY}


def test_mlflow_finds_the_app_without_a_reinstall(monkeypatch):
    """Without the entry point installed (no ``pip install -e .`` since it came), MLflow's
    ``--app-name`` still finds the app in the environment ``fer_sweep ui`` gives it; with it,
    that environment is left as it is."""
    monkeypatch.setattr(ui, "app_installed", lambda: True)
    with app_registered({"A": "1"}) as env:
        assert env == {"A": "1"}
    monkeypatch.setattr(ui, "app_installed", lambda: False)
    probe = "from mlflow.server import _find_app; print(_find_app('fer-sweep'))"
    with app_registered(server_env()) as env:
        found = subprocess.run(
            [sys.executable, "-c", probe], env=env, text=True, capture_output=True
        )
        folder = env["PYTHONPATH"].split(os.pathsep)[0]
    assert found.stdout.strip() == APP_FACTORY, found.stderr[-2000:]
    assert not Path(folder).exists()  # gone with the server


def test_the_open_page_prepares_the_browser_then_goes_to_the_list_or_a_study():
    from fer_sweep.tracking import runs_url
    from fer_sweep.tracking._ui_app import page

    def settings(html: str) -> dict:
        start = html.index("const settings = ") + len("const settings = ")
        return json.loads(html[start : html.index(";\n", start)])

    listed = settings(page(None))
    assert listed["target"] == "/#/experiments?workflowType=machine_learning"
    assert listed["workflowKey"] == "mlflow.workflowType_v1"
    assert json.dumps(listed["workflow"]) == '"machine_learning"'  # useLocalStorage's JSON
    assert listed["viewTag"] == "mlflow.sharedViewState.fer-sweep"
    assert listed["layoutKey"].format(ids=json.dumps(["3"])) == (
        'MLflowLocalStorage-1.1-ExperimentPage-["3"]-ReactComponentState'
    )
    assert (
        settings(page("12"))["target"]
        == runs_url("", "12")
        == ("/#/experiments/12/runs?workflowType=machine_learning&viewStateShareKey=fer-sweep")
    )


def test_the_mlflow_app_serves_the_page_and_refuses_what_is_not_an_experiment_id():
    from fer_sweep.tracking._ui_app import create_app

    app = create_app()  # MLflow's FastAPI app here (uvicorn); its Flask app inside
    create_app()  # a second call adds nothing
    from mlflow.server import app as flask_app

    assert [r.rule for r in flask_app.url_map.iter_rules()].count(OPEN_PATH) == 1
    assert app is flask_app or hasattr(app, "routes")
    web = flask_app.test_client()
    reply = web.get(OPEN_PATH + "?experiment=4")
    assert reply.status_code == 200 and reply.mimetype == "text/html"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "/#/experiments/4/runs?" in reply.get_data(as_text=True)
    bad = web.get(OPEN_PATH + "?experiment=4%3C/script%3E")
    assert bad.status_code == 400 and "not an experiment id" in bad.get_data(as_text=True)


def test_the_job_runner_is_off_unless_the_environment_asks_for_it():
    assert server_env({})[JOB_RUNNER_ENV] == "false"
    assert server_env({JOB_RUNNER_ENV: "true"})[JOB_RUNNER_ENV] == "true"
    cmd = mlflow_command("sqlite:////x/mlflow.db", 5001, DEFAULT_WORKERS, None)
    assert cmd[cmd.index("--workers") + 1] == "1" and "--default-artifact-root" not in cmd


def rest(port: int, path: str, body: dict | None = None) -> dict:
    url = f"http://{HOST}:{port}/api/2.0/mlflow/{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def wait_for_rest(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "fer_sweep ui exited before it answered"
        try:
            rest(port, "experiments/search", {"max_results": 1})
            return
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    raise AssertionError(f"the UI did not answer within {timeout} s")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ui_serves_the_sweep_over_rest_and_sigterm_frees_the_port(tmp_path, fer_csv, tiny_sweep):
    from fer_sweep import metric_names as mn
    from fer_sweep.data import load_dataset
    from fer_sweep.lifecycle import run_sweep
    from fer_sweep.search import load_sweep
    from fer_sweep.settings import Settings

    counts = run_sweep(load_sweep(tiny_sweep), Settings.resolve(), data=str(fer_csv), live=False)
    assert counts["complete"] == 2
    sha256 = load_dataset(fer_csv).sha256

    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fer_sweep", "ui", "--port", str(port), "--no-open"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_rest(port, proc)
        tree = descendants(proc.pid)

        exp = rest(port, "experiments/get-by-name?experiment_name=tiny-tiny")["experiment"]
        tags = {t["key"]: t["value"] for t in exp["tags"]}
        note = tags["mlflow.note.content"]
        assert "Does dropout help?" in note and "66.55 %" in note
        assert "`PrivateTest/accuracy_at_best_epoch`" in note
        assert tags["mlflow.experimentKind"] == "custom_model_development"
        assert "mlflow.sharedViewState.fer-sweep" in tags

        runs = rest(port, "runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
        tags_of = {
            r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs
        }
        trials = [r for r in runs if "mlflow.parentRunId" in tags_of[r["info"]["run_id"]]]
        assert len(runs) == 3 and len(trials) == 2
        # Each trial is named and tagged by what was chosen.
        names = sorted(r["info"]["run_name"] for r in trials)
        assert names == ["t00 dropout=0.3 all", "t01 dropout=off"]
        assert sorted(tags_of[r["info"]["run_id"]]["choice.dropout"] for r in trials) == [
            "0.3 all",
            "off",
        ]
        for run in runs:
            run_tags = tags_of[run["info"]["run_id"]]
            assert run_tags["mlflow.source.name"] == "fer_sweep sweep tiny --budget tiny"
            (given,) = run["inputs"]["dataset_inputs"]
            assert given["dataset"]["name"] == fer_csv.name
            assert given["dataset"]["digest"] == sha256[:16]
            assert json.loads(given["dataset"]["profile"])["sha256"] == sha256
            metrics = {m["key"]: m for m in run["data"]["metrics"]}
            # Split-named, the parent's as its trials'; end-of-run numbers at step 0 (bars).
            for name in (mn.PUBLIC_BEST, mn.PRIVATE_FINAL, mn.PRIVATE_AT_BEST):
                assert metrics[name]["step"] == 0
            assert (run in trials) == (mn.PUBLIC_ACCURACY in metrics)
            if run in trials:  # first logged, first listed: what MLflow's compare view plots
                assert run["data"]["metrics"][0]["key"] == mn.PUBLIC_ACCURACY
            note = run_tags["mlflow.note.content"]
            if run in trials:
                private = 100 * metrics[mn.PRIVATE_FINAL]["value"]
                # Neither arm is a thesis recipe at its length: the first 50 characters say so.
                assert note.startswith(f"PrivateTest {private:.2f} % (not comparable with thesis)")
                assert "vs thesis" not in note
            else:
                best = max(
                    trials,
                    key=lambda r: {m["key"]: m["value"] for m in r["data"]["metrics"]}[
                        mn.PUBLIC_BEST
                    ],
                )
                assert note.startswith("Best trial: not comparable with the thesis")
                assert "Best of 2 complete trial(s) by PublicTest: " in note
                assert best["info"]["run_name"] in note
        history = rest(
            port,
            "metrics/get-history?run_id={}&metric_key={}".format(
                trials[0]["info"]["run_id"], mn.PUBLIC_ACCURACY
            ),
        )["metrics"]
        assert [m["step"] for m in history] == [1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        finally:
            log.close()
    assert code == 0, (tmp_path / "ui.log").read_text()[-2000:]
    assert len(tree) >= 2  # `mlflow ui` and its uvicorn server at least
    assert not [p for p in tree if alive(p)]
    assert port_is_free(port)
    with pytest.raises(ConnectionRefusedError):  # nobody listens there any more
        socket.create_connection((HOST, port), timeout=5).close()
    printed = (tmp_path / "ui.log").read_text()
    assert "MLflow UI stopped" in printed
    assert "MLflow UI ready after " in printed
    assert f": http://127.0.0.1:{port}/fer-sweep/open\n" in printed
    link = f"  tiny-tiny: http://127.0.0.1:{port}/fer-sweep/open?experiment={exp['experiment_id']}"
    assert link + "\n" in printed
