"""Screenshots of the MLflow UI as a new user meets it, from a real headless Chromium.

Starts ``fer_sweep ui`` on a store, opens the link it prints in Chromium (driven by
Playwright; no browser download: Debian's ``chromium`` package), and saves

- ``runs-table.png``: the study's runs with its saved view (choices, PublicTest,
  PrivateTest, the trials' notes),
- ``charts.png``: the same runs as charts (curves per epoch, bars for end-of-run numbers),
- ``trial.png``: the best trial's page (its note against the thesis, dataset, params),
- ``compare.png``: MLflow's compare view of the study's trials.

Usage (``make docs-screenshots`` runs it on ``mlruns/``)::

    pip install -e '.[docs]'; apt-get install chromium
    python docs/screenshots.py --store mlruns [--study dropout-smoke] [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1680, "height": 960}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rest(base: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{path}", data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())


def start_ui(store: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "FER_SWEEP_STORE": str(store.resolve())}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "fer_sweep", "ui", "--port", str(port), "--no-open"]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"fer_sweep ui exited:\n{log.read_text()[-2000:]}")
        try:
            rest(f"http://127.0.0.1:{port}", "experiments/search", {"max_results": 1})
            return proc
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit("the UI did not answer within 600 s")


def study_runs(base: str, study: str | None) -> tuple[dict, list[dict]]:
    """The study's experiment (the first fer_sweep study unless named) and its runs."""
    from fer_sweep.tracking import SAVED_VIEW_ID, SAVED_VIEW_PREFIX

    experiments = rest(base, "experiments/search", {"max_results": 1000})["experiments"]
    key = SAVED_VIEW_PREFIX + SAVED_VIEW_ID
    found = [
        e
        for e in experiments
        if (study is None or e["name"] == study) and any(t["key"] == key for t in e.get("tags", []))
    ]
    if not found:
        raise SystemExit(f"no fer_sweep study {study or ''} in the store")
    exp = found[0]
    runs = rest(base, "runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    return exp, runs


def tags_of(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def main(argv: list[str] | None = None) -> None:
    from playwright.sync_api import sync_playwright

    from fer_sweep import metric_names as mn
    from fer_sweep.tracking import runs_url

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("mlruns"))
    parser.add_argument("--study", help="experiment name (default: the first study)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "img")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.gettempdir()) / f"fer-sweep-ui-{port}.log"  # not among the images
    proc = start_ui(args.store, port, log)
    try:
        exp, runs = study_runs(base, args.study)
        trials = [r for r in runs if "mlflow.parentRunId" in tags_of(r)]
        if not trials:
            raise SystemExit(f"study {exp['name']} has no trial runs yet")

        def objective(run: dict) -> float:
            metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
            return metrics.get(mn.PUBLIC_BEST, float("-inf"))

        best = max(trials, key=objective)
        exp_id = exp["experiment_id"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)

            def show(url: str, wait_text: str, out: str, settle_ms: int = 3000) -> None:
                page.goto(url)
                page.get_by_text(wait_text).first.wait_for(timeout=120_000)
                close_assistant(page)
                page.wait_for_timeout(settle_ms)  # charts animate in
                page.screenshot(path=str(args.out / out))
                print(args.out / out)

            runs_link = runs_url(base, exp_id)
            best_name = best["info"]["run_name"]
            show(runs_link, best_name, "runs-table.png")
            show(runs_link + "&compareRunsMode=CHART", mn.PUBLIC_ACCURACY, "charts.png")
            # MLflow 3 falls back to its GenAI layout on any page whose link lacks the mode.
            mode = "workflowType=machine_learning"
            show(
                f"{base}/#/experiments/{exp_id}/runs/{best['info']['run_id']}?{mode}",
                best_name,
                "trial.png",
            )
            ids = json.dumps([r["info"]["run_id"] for r in trials])
            show(
                f"{base}/#/compare-runs?runs={ids}&experiments={json.dumps([exp_id])}&{mode}",
                best_name,
                "compare.png",
                settle_ms=5000,
            )
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def close_assistant(page) -> None:
    """MLflow 3 opens an assistant panel over a third of the page; a user closes it once."""
    panel = page.get_by_text("MLflow Assistant")
    if panel.count() and panel.first.is_visible():
        close = page.locator("button[aria-label='Close']")
        if close.count():
            close.first.click()
            page.wait_for_timeout(500)


if __name__ == "__main__":
    main()
