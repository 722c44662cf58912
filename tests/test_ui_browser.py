"""The MLflow UI in a real browser: from the link ``fer_sweep ui`` prints to a study's runs table.

Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; no browser download)
with a fresh profile, as a new user meets the UI: the printed experiments-list link, one
click on the study, and the runs table must show the study's saved view (trials only, best
first, the accuracies in percent), not MLflow's GenAI overview of the experiment. What makes
it work are MLflow 3.17's own localStorage keys (tracking/_ui_app.py), so this is the test that
catches an MLflow upgrade that reads them no more. Skipped without chromium or playwright.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_sweep import metric_names as mn
from fer_sweep.tracking._ui import HOST
from fer_sweep.tracking._views import TRIALS_ONLY

CHROMIUM = os.environ.get("FER_SWEEP_CHROMIUM", "/usr/bin/chromium")
if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
# About a minute on 2 busy cores: a study logged, MLflow's server started, two page loads.
pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
]
# Wide enough that the grid renders every column of the view without scrolling.
VIEWPORT = {"width": 2400, "height": 1000}
UI_WAIT = 300  # seconds until `fer_sweep ui` answers: 10-70 s on 2 busy cores
PAGE_WAIT_MS = 120_000

STUDY = "tiny-tiny"
# fake_result: PublicTest 0.5 - fc_dropout / 4, PrivateTest a point below.
BEST, OTHER = "t01 dropout=off", "t00 dropout=0.3 all"


@pytest.fixture
def printed_links(tmp_path, synthetic_csv, fake_training, tiny_sweep):
    """A two-trial study logged by fer_sweep (no training), then `fer_sweep ui` on its store:
    the links it printed, {name: link}, the experiments list under "list"."""
    from fer_sweep.lifecycle import run_sweep
    from fer_sweep.search import load_sweep
    from fer_sweep.settings import Settings

    counts = run_sweep(
        load_sweep(tiny_sweep), Settings.resolve(), data=str(synthetic_csv), live=False
    )
    assert counts["complete"] == 2

    port = free_port()
    log_path = tmp_path / "ui.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fer_sweep", "ui", "--port", str(port), "--no-open"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + UI_WAIT
        while "MLflow UI ready after" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no UI within {UI_WAIT} s"
            time.sleep(0.5)
        time.sleep(0.5)  # the per-study lines follow the first
        printed = log_path.read_text()
        links = {"list": re.search(r"MLflow UI ready after \d+ s: (\S+)", printed).group(1)}
        links.update(re.findall(r"^  (\S+): (http\S+)$", printed, flags=re.M))
        yield links
    finally:
        proc.send_signal(signal.SIGTERM)  # stops the server's whole process group
        proc.wait(timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def assert_the_study_view(page) -> None:
    """The runs table of the study with its saved view: the trials alone, best first, the
    objective and PrivateTest (both weights) as percent columns."""
    page.get_by_text("2 matching runs").wait_for(timeout=PAGE_WAIT_MS)
    assert re.search(r"/#/experiments/\d+/runs\?", page.url), page.url
    assert "workflowType=machine_learning" in page.url
    assert page.get_by_text("Overview", exact=True).count() == 0  # not the GenAI pages
    inputs = page.locator("input").evaluate_all("els => els.map((e) => e.value)")
    assert TRIALS_ONLY in inputs, inputs  # the search box holds the view's filter
    for name in (mn.PUBLIC_BEST, mn.PRIVATE_FINAL, mn.PRIVATE_AT_BEST):
        column = f"metrics.`{mn.percent_name(name)}`"  # the grid's id of the view's column
        page.locator(f'[role="columnheader"][col-id="{column}"]').wait_for(timeout=PAGE_WAIT_MS)
    rows = table_rows(page)
    trials = [r for r in rows if BEST in r or OTHER in r]
    assert len(trials) == 2 and BEST in trials[0], rows  # best first
    # The percent twins as MLflow prints them (it cannot format a column: 42.5, not 42.50).
    assert re.search(r"\b50\b", trials[0]) and re.search(r"\b49\b", trials[0]), trials[0]
    assert re.search(r"\b42\.5\b", trials[1]) and re.search(r"\b41\.5\b", trials[1]), trials[1]
    assert not [r for r in rows if f"\n{STUDY}\n" in f"\n{r}\n"], "the study's run is listed"


def table_rows(page) -> list[str]:
    """The runs table's rows, top to bottom, each as its text: the grid draws a row's pinned
    columns (the run's name) and its other columns as two elements with one row index."""
    return page.locator('[role="row"][row-index]').evaluate_all(
        """els => {
            const rows = new Map();
            for (const el of els) {
                const i = Number(el.getAttribute("row-index"));
                rows.set(i, (rows.has(i) ? rows.get(i) + "\\n" : "") + el.innerText);
            }
            return [...rows.keys()].sort((a, b) => a - b).map((i) => rows.get(i));
        }"""
    )


def test_the_printed_link_reaches_the_studys_runs_table_in_one_click(printed_links):
    started = time.monotonic()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # A fresh profile: no layout, no workflow preference, as a new user's browser.
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(printed_links["list"])
            study = page.get_by_role("link", name=STUDY, exact=True)
            study.wait_for(timeout=PAGE_WAIT_MS)
            study.click()  # the one click; at most two are allowed
            assert_the_study_view(page)

            # The study's own printed link: no click at all.
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(printed_links[STUDY])
            assert_the_study_view(page)
        finally:
            browser.close()
    print(f"browser part: {time.monotonic() - started:.0f} s")
