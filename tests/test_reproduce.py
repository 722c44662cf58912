"""The reproduction runner and its report, on a small slice with 1-epoch runs."""

import csv
import json
import statistics

import numpy as np
import pytest

from fer_sweep.errors import UserError
from fer_sweep.reporting import (
    RESULT_FILE,
    reproduction_rows,
    run_all,
    stats,
    top3_verdict,
    write_report,
)
from fer_sweep.reporting._comparisons import interval
from fer_sweep.reporting._reproduction_folders import (
    SESSIONS_FILE,
    report_seeds,
    run_config,
    workdir,
)
from fer_sweep.reporting._reproduction_report import (
    FIGURE,
    NOTES,
    REPORT,
    TABLE,
    ensemble_dir,
    sessions,
)
from fer_sweep.training import STATE_FILE, checkpoint_path, predictions


@pytest.mark.slow
def test_runs_resume_from_their_folders_and_the_report_says_what_ran(fer_dataset, tmp_path):
    from fer_sweep.lifecycle import PaceCache

    paces = PaceCache(tmp_path / "cache")
    run_all(fer_dataset, out=tmp_path, seeds=(0,), epochs=1, progress=False, pace_cache=paces)
    # Each run's finished epoch went into the pace cache, for later forecasts.
    recorded = json.loads(paces.path.read_text())
    # One entry per (architecture, batch) the recipes train: top1 and top2 share C at batch
    # 64, so the later run's epoch is the one kept.
    assert sorted(entry["how"].rsplit(" of ", 1)[1] for entry in recorded.values()) == [
        "thesis-top2 seed 0",
        "thesis-top3 seed 0",
    ]
    rows = {(r.recipe, r.seed): r for r in reproduction_rows(tmp_path, seeds=(0, 1))}
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

    # The report written after the runs lists every recipe at seeds 0-2, not only those run.
    with (tmp_path / TABLE).open() as f:
        assert sorted((r["recipe"], r["seed"]) for r in csv.DictReader(f)) == sorted(
            (recipe, str(seed))
            for recipe in ("thesis-top1", "thesis-top2", "thesis-top3")
            for seed in (0, 1, 2)
        )

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
    pace = statistics.median(r.seconds_per_epoch for r in reproduction_rows(tmp_path, seeds=(0,)))
    assert (
        f"- thesis-top3 seed 1: not run yet; 100 epochs left, about "
        f"{100 * pace / 3600:.1f} h at {pace:.0f} s an epoch."
    ) in with_seed1
    report = write_report(tmp_path, fer_dataset, seeds=(0,)).read_text()
    assert "| thesis-top1 | 66.55 | 0 | - | - | - |" in report  # no full-length run yet
    ensemble = next(line for line in report.splitlines() if line.startswith("| 0 | shortened"))
    plain, tta = (float(v) for v in ensemble.strip("|").split("|")[2:4])
    assert 0 <= plain <= 100 and 0 <= tta <= 100
    with (tmp_path / TABLE).open() as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["shortened to 1 epochs"] * 3


def _partial_run(out, seconds, starts):
    """A run folder as an interrupted reproduction leaves it: a checkpoint after
    len(seconds) epochs and one sessions.json entry per (from_epoch, backend) start."""
    folder = workdir(out, "thesis-top1", 0)
    checkpoint_path(folder).mkdir(parents=True)
    n = len(seconds)
    history = {"accuracy": [0.5] * n, "val_accuracy": [0.5] * n, "epoch_seconds": seconds}
    state = {"epoch": n, "best_epoch": n, "best_val_accuracy": 0.5, "history": history}
    (checkpoint_path(folder) / STATE_FILE).write_text(
        json.dumps({"state": state, "config": {"epochs": 80}})
    )
    entries = [
        {
            "started": f"2026-11-29T0{i}:00:00+00:00",
            "from_epoch": e,
            "backend": b,
            "hardware": "2 CPU cores",
        }
        for i, (e, b) in enumerate(starts)
    ]
    (folder / SESSIONS_FILE).write_text(json.dumps(entries))
    return folder


def test_the_report_splits_a_run_by_session_and_estimates_from_the_latest_pace(tmp_path):
    # Epochs 1-2 slow (default allocator), a resume that died mid-epoch 3, then 3-5 fast.
    folder = _partial_run(
        tmp_path,
        [800.0, 810.0, 480.0, 500.0, 490.0],
        [(0, "tensorflow"), (2, "tensorflow"), (2, "tensorflow, pooled")],
    )
    found = sessions(folder)
    assert [(s.first_epoch, s.last_epoch, s.seconds) for s in found] == [
        (1, 2, [800.0, 810.0]),
        (3, 2, []),
        (3, 5, [480.0, 500.0, 490.0]),
    ]
    row = next(r for r in reproduction_rows(tmp_path, seeds=(0,)) if r.recipe == "thesis-top1")
    assert row.seconds_per_epoch == 500.0 and row.recent_seconds_per_epoch == 490.0

    report = write_report(tmp_path, seeds=(0,)).read_text()
    # What is left is estimated at today's pace, not at the median the slow epochs inflate.
    assert (
        "- thesis-top1 seed 0: stopped after epoch 5 of 80; 75 epochs left, about "
        "10.2 h at 490 s an epoch (its latest session's median)"
    ) in report
    # Runs never started are estimated from the same recent pace.
    assert "- thesis-top2 seed 0: not run yet; 80 epochs left, about 10.9 h at 490 s" in report
    assert "| thesis-top1 | 0 | 2026-11-29 00:00:00 | 1-2 | 805 | 800 - 810 | tensorflow |" in (
        report
    )
    assert "| 2026-11-29 01:00:00 | none completed | - | - | tensorflow |" in report
    assert "| 2026-11-29 02:00:00 | 3-5 | 490 | 480 - 500 | tensorflow, pooled |" in report


def _finished_run(out, recipe, seed, epochs, private_final, private_at_best):
    """A run folder as a completed reproduction leaves it: result.json and one session."""
    folder = workdir(out, recipe, seed)
    folder.mkdir(parents=True)
    history = {
        "accuracy": [0.6] * epochs,
        "val_accuracy": [0.6] * epochs,
        "epoch_seconds": [500.0] * epochs,
    }
    (folder / RESULT_FILE).write_text(
        json.dumps(
            {
                "config": run_config(recipe, seed, epochs).model_dump(mode="json"),
                "epochs_trained": epochs,
                "best_epoch": epochs - 3,
                "public_best": 0.65,
                "public_final": 0.64,
                "private_final": private_final,
                "private_at_best_epoch": private_at_best,
                "history": history,
                "backend": "keras 3, tensorflow",
                "hardware": "2 CPU cores",
            }
        )
    )
    (folder / SESSIONS_FILE).write_text(
        json.dumps(
            [
                {
                    "started": "2026-11-29T00:00:00+00:00",
                    "from_epoch": 0,
                    "backend": "keras 3, tensorflow",
                    "hardware": "2 CPU cores",
                }
            ]
        )
    )


def test_only_full_length_runs_are_set_beside_the_thesis(tmp_path):
    _finished_run(tmp_path, "thesis-top1", 0, 80, 0.6600, 0.6550)
    _finished_run(tmp_path, "thesis-top1", 1, 80, 0.6500, 0.6450)
    _finished_run(tmp_path, "thesis-top2", 0, 10, 0.5000, 0.5000)  # a shortened run
    rows = {(r.recipe, r.seed): r for r in reproduction_rows(tmp_path, seeds=(0, 1))}
    assert rows[("thesis-top1", 0)].status == "finished"
    assert rows[("thesis-top2", 0)].status == "shortened to 10 epochs"

    report = write_report(tmp_path, seeds=(0, 1)).read_text()
    # Mean and sample sd over the two finished seeds, and the mean's gap to 66.55.
    assert "| thesis-top1 | 66.55 | 2 | 65.50 +- 0.71 | -1.05 | 65.00 +- 0.71 |" in report
    # The 10-epoch run has numbers in its own row but stays out of the comparison.
    assert "| thesis-top2 | 0 | shortened to 10 epochs | 50.00 | 50.00 | 7 |" in report
    assert "| thesis-top2 | 65.88 | 0 | - | - | - |" in report
    assert "- thesis-top1 seed 0" not in report.split("## What is left")[1].split("##")[0]
    _finished_run(tmp_path, "thesis-top3", 0, 100, 0.6582, 0.6600)
    report = write_report(tmp_path, seeds=(0,)).read_text()
    assert "| thesis-top3 | 65.82 | 1 | 65.82 (one seed) | +0.00 | 66.00 (one seed) |" in report
    assert "| thesis-top1 | 0 | 2026-11-29 00:00:00 | 1-80 | 500 | 500 - 500 |" in report


def test_a_gap_of_more_than_one_and_a_half_points_asks_for_a_reason(tmp_path):
    _finished_run(tmp_path, "thesis-top1", 0, 80, 0.6560, 0.6550)  # 0.95 below 66.55
    _finished_run(tmp_path, "thesis-top2", 0, 80, 0.6400, 0.6450)  # 1.88 below 65.88
    report = write_report(tmp_path, seeds=(0,)).read_text()
    assert "points below the thesis: thesis-top2 is 1.88 points below; not looked into" in report
    assert "thesis-top1 is" not in report and "## Notes" not in report

    # What a person found is kept in its own file and survives the report's rewrite.
    (tmp_path / NOTES).write_text("Traced to the augmentation.\n")
    report = write_report(tmp_path, seeds=(0,)).read_text()
    assert "thesis-top2 is 1.88 points below; what it was traced to is below." in report
    assert report.split(f"## Notes on the comparison (hand-written, `{NOTES}`)")[1].strip() == (
        "Traced to the augmentation.\n\n![learning curves](thesis-reproduction-curves.png)"
    )


def _predictions(folder, n=200, variants=None, rows=None, split="PrivateTest"):
    """A predictions.npz in ``folder`` whose variants are right on the given images."""
    labels = np.arange(n) % 7
    out = predictions.Predictions(
        "ab" * 32,
        {
            split: predictions.SplitPredictions(
                np.arange(n, dtype=np.int32) if rows is None else rows, labels.astype(np.uint8)
            )
        },
    )
    for variant, correct in variants.items():
        pred = np.where(correct, labels, (labels + 1) % 7)
        out.splits[split].add(variant, np.eye(7)[pred])
    folder.mkdir(parents=True, exist_ok=True)
    return predictions.save(out, folder / predictions.FILE)


def _right(n_right, n=200):
    return np.arange(n) < n_right


def _run_variants(n_right):
    """What a run's file holds: final and best-epoch weights, and final with flip TTA."""
    return {"final": _right(n_right), "best": _right(n_right), "final+tta": _right(n_right)}


def test_the_report_pairs_runs_on_their_per_image_predictions(tmp_path):
    _finished_run(tmp_path, "thesis-top1", 0, 80, 0.67, 0.66)
    final, best, tta = _right(134), _right(128), _right(140)  # 67 %, 64 %, 70 %
    _predictions(
        workdir(tmp_path, "thesis-top1", 0),
        variants={"final": final, "best": best, "final+tta": tta},
    )
    _finished_run(tmp_path, "thesis-top1", 1, 80, 0.65, 0.65)  # finished before predictions

    report = write_report(tmp_path, seeds=(0, 1)).read_text()
    section = report.split("## Paired comparisons")[1].split("## Notes")[0]
    # final against best epoch: 6 images only final gets right, none the other way round,
    # so McNemar's p is 2 / 2^6; the same numbers as the statistics module's.
    c = stats.compare(final, best)
    assert (c.a_only, c.b_only, c.p) == (6, 0, pytest.approx(2 / 64))
    assert (
        f"| thesis-top1 seed 0: final | thesis-top1 seed 0: best epoch (77) | "
        f"{interval(stats.accuracy(final))} | "
        f"{interval(stats.accuracy(best))} | "
        f"{interval(c.difference, signed=True)} | 200 | 6 / 0 | McNemar exact | "
        f"0.031 | 0.062 |"
    ) in section  # Holm over the table's two rows: 2 x 2/64
    assert "| thesis-top1 seed 0: final + flip TTA | thesis-top1 seed 0: final |" in section
    assert (
        "- thesis-top1 seed 1: no predictions.npz yet; `python -m fer_sweep predictions "
        f"backfill {workdir(tmp_path, 'thesis-top1', 1)}` writes it."
    ) in section
    assert (
        "- thesis-top1 against thesis-top2: not run yet (thesis-top2: no finished "
        "full-length run with predictions)."
    ) in section
    assert "Not run yet: it needs all three recipes finished with the same seed" in section
    assert top3_verdict(tmp_path, seeds=(0, 1)) == (
        "not run at the thesis's budget | thesis-top2, thesis-top3: no finished run with "
        "predictions; one seed each needs about 25 h at 500 s an epoch (`reproduce`)"
    )

    # Once top-2 and top-3 have finished, the recipes are set against each other (top-1 over
    # its seeds with predictions), and their ensemble against the member best on PublicTest.
    _finished_run(tmp_path, "thesis-top2", 0, 80, 0.60, 0.60)
    _predictions(workdir(tmp_path, "thesis-top2", 0), variants=_run_variants(120))
    _finished_run(tmp_path, "thesis-top3", 0, 100, 0.50, 0.50)
    _predictions(workdir(tmp_path, "thesis-top3", 0), variants=_run_variants(100))
    _predictions(
        ensemble_dir(tmp_path, 0), variants={"ensemble": _right(150), "ensemble+tta": _right(151)}
    )
    report = write_report(tmp_path, seeds=(0, 1)).read_text()
    section = report.split("### Between recipes")[1]
    assert "| thesis-top1 | thesis-top2 | 67.00 (" in section
    assert (
        "thesis-top1 above thesis-top2: holds; thesis-top1 above thesis-top3: holds; "
        "thesis-top2 above thesis-top3: holds."
    ) in section
    assert "not run yet" not in section.split("### Each top-3")[0]
    assert "| seed 0: ensemble | seed 0: thesis-top1 | 75.00 (" in section
    assert "| 0 | full | 75.00 | 75.50 |" in report  # the ensemble table reads the same file
    # The claims file's verdict on the thesis's order, from the same files.
    assert top3_verdict(tmp_path, seeds=(0, 1)) == (
        "holds | the reproduction's full-length runs (seeds: thesis-top1 1, thesis-top2 1, "
        "thesis-top3 1)"
    )


def test_runs_scored_on_different_images_are_not_paired(tmp_path):
    _finished_run(tmp_path, "thesis-top1", 0, 80, 0.67, 0.66)
    _predictions(
        workdir(tmp_path, "thesis-top1", 0),
        variants={"final": _right(134), "best": _right(128), "final+tta": _right(1)},
    )
    _finished_run(tmp_path, "thesis-top2", 0, 80, 0.60, 0.60)
    _predictions(
        workdir(tmp_path, "thesis-top2", 0),
        variants=_run_variants(120),
        rows=np.arange(1, 201, dtype=np.int32),
    )
    with pytest.raises(UserError, match="different PrivateTest images"):
        write_report(tmp_path, seeds=(0,))


def test_a_report_covers_seeds_0_to_2_and_every_seed_on_disk_whichever_ran(tmp_path):
    # A `reproduce --seeds 1` that stops writes the report too: it must keep seed 0's rows.
    assert report_seeds(tmp_path) == (0, 1, 2)
    for name in ("thesis-top2-seed4", "thesis-top1-seed0", "other-seed9", "thesis-top3-seedx"):
        (tmp_path / "work" / name).mkdir(parents=True)
    (tmp_path / "work" / "thesis-top1-seed7").write_text("a file, not a run folder")
    assert report_seeds(tmp_path) == (0, 1, 2, 4)
