"""The reproduction runner and its report, on a small slice with 1-epoch runs."""

import csv
import json
import statistics

import pytest

from fer_sweep.reproduce import (
    FIGURE,
    REPORT,
    SESSIONS_FILE,
    TABLE,
    collect,
    run_all,
    workdir,
    write_report,
)

pytestmark = pytest.mark.slow


def test_runs_resume_from_their_folders_and_the_report_says_what_ran(fer_dataset, tmp_path):
    run_all(fer_dataset, out=tmp_path, seeds=(0,), epochs=1, progress=False)
    rows = {(r.recipe, r.seed): r for r in collect(tmp_path, seeds=(0, 1))}
    assert len(rows) == 6
    for recipe in ("thesis-top1", "thesis-top2", "thesis-top3"):
        ran = rows[(recipe, 0)]
        # One epoch is not the thesis's 80 or 100: labelled, and kept out of the comparison.
        assert ran.status == "shortened to 1 epochs" and ran.epochs_done == 1
        assert 0 <= ran.private_final <= 100 and 0 <= ran.private_at_best_epoch <= 100
        assert ran.seconds_per_epoch > 0 and "CPU" in ran.hardware
        assert rows[(recipe, 1)].status == "not run yet"

    sessions = json.loads((workdir(tmp_path, "thesis-top1", 0) / SESSIONS_FILE).read_text())
    assert [s["from_epoch"] for s in sessions] == [0]
    assert sessions[0]["backend"].endswith("tensorflow, pooled (BFC) memory")

    # Finished runs are skipped: a second call trains nothing and leaves the numbers alone.
    before = (tmp_path / TABLE).read_text()
    run_all(fer_dataset, out=tmp_path, seeds=(0,), epochs=1, progress=False)
    assert (tmp_path / TABLE).read_text() == before

    report = write_report(tmp_path, fer_dataset, seeds=(0,)).read_text()
    assert report == (tmp_path / REPORT).read_text() and (tmp_path / FIGURE).stat().st_size > 0
    # What is left is said with its reason: shortened runs are not comparable.
    assert "- thesis-top3 seed 0: shortened to 1 epochs, so not compared" in report
    # A seed never started is estimated from the pace the other runs measured.
    with_seed1 = write_report(tmp_path, None, seeds=(0, 1)).read_text()  # no ensembles
    pace = statistics.median(r.seconds_per_epoch for r in collect(tmp_path, seeds=(0,)))
    assert (f"- thesis-top3 seed 1: not run yet; 100 epochs left, about "
            f"{100 * pace / 3600:.1f} h at {pace:.0f} s an epoch.") in with_seed1  # fmt: skip
    report = write_report(tmp_path, fer_dataset, seeds=(0,)).read_text()
    assert "| thesis-top1 | 66.55 | 0 | - | - | - |" in report  # no full-length run yet
    ensemble = next(line for line in report.splitlines() if line.startswith("| 0 | shortened"))
    plain, tta = (float(v) for v in ensemble.strip("|").split("|")[2:4])
    assert 0 <= plain <= 100 and 0 <= tta <= 100
    with (tmp_path / TABLE).open() as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["shortened to 1 epochs"] * 3
