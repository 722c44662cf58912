"""The command line as a user runs it: ``python -m fer_sweep ...`` in a subprocess."""

import importlib.util
import os
import subprocess
import sys

import pytest

from fer_sweep.thesis import PARAMETER_COUNTS


def fer(*args, timeout=600, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fer_sweep", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_models_prints_the_thesis_table():
    out = fer("models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for arch, count in PARAMETER_COUNTS.items():
        row = next(line for line in lines if line.startswith(arch + " "))
        assert f"{count:,}" in row and "MISMATCH" not in row
    assert "1,917K" in out.stdout


@pytest.mark.real_data
def test_data_check_prints_the_real_counts(real_data_path):
    out = fer("data", "check", "--data", real_data_path)
    assert out.returncode == 0, out.stderr
    cells = [line.replace(",", "").split() for line in out.stdout.splitlines()]
    splits = ("Training", "PublicTest", "PrivateTest")
    rows = {c[0]: c[1:] for c in cells if c and c[0] in splits}
    # ../shared/data/README.md: rows, then class counts 0 Angry .. 6 Neutral.
    assert rows == {
        "Training": ["28709", "3995", "436", "4097", "7215", "4830", "3171", "4965"],
        "PublicTest": ["3589", "467", "56", "496", "895", "653", "415", "607"],
        "PrivateTest": ["3589", "491", "55", "528", "879", "594", "416", "626"],
    }
    assert ".h5" in out.stdout  # the cache path


def test_train_a_short_run_and_rank_it(tmp_path, fer_csv):
    # 60 images are one batch: three epochs give the step schedule's three rates one each.
    out = fer(
        "train",
        "--preset",
        "thesis-top1",
        "--epochs",
        3,
        "--subset",
        60,
        "--data",
        fer_csv,
        "--no-progress",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "PrivateTest final" in out.stdout
    run_id = out.stdout.split()[-1]
    # A finished run is never written again: --resume on it is one error line, exit 2.
    again = fer("train", "--resume", run_id, "--data", fer_csv, "--no-progress", cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert run_id in again.stderr and "never written again" in again.stderr
    # Tests isolate the store with FER_SWEEP_STORE; a plain `train` tracks into it.
    best = fer("best", "--format", "markdown", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    assert "No finished trial yet." in best.stdout and "66.55" in best.stdout


# The CLI in a fresh interpreter that reports afterwards whether TensorFlow was ever loaded.
_CLI_THEN_MODULES = """
import sys
from fer_sweep.cli import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as stop:
    code = stop.code
print("# tensorflow loaded:", "tensorflow" in sys.modules)
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)")
def test_train_on_jax_runs_without_tensorflow(tmp_path, fer_csv):
    # The command; the synthetic set (70 Training images, no real data beside the repo)
    # needs a smaller batch to give the step schedule an update per rate.
    small = [] if "slice" in fer_csv.name else ["--set", "batch_size=16"]
    args = [
        "train",
        "--preset",
        "thesis-top1",
        "--epochs",
        "1",
        "--subset",
        "300",
        *small,
        "--data",
        str(fer_csv),
        "--no-progress",
    ]
    out = subprocess.run(
        [sys.executable, "-c", _CLI_THEN_MODULES, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "PrivateTest final" in out.stdout
    assert out.stdout.rstrip().endswith("# tensorflow loaded: False"), out.stdout[-2000:]


def test_a_step_schedule_without_an_update_per_rate_is_one_line(tmp_path, fer_csv):
    out = fer(
        "train",
        "--preset",
        "thesis-top1",
        "--epochs",
        1,
        "--subset",
        60,
        "--data",
        fer_csv,
        "--no-progress",
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "step schedule with 2 drop(s) needs more than 1 update(s)" in out.stderr


def test_errors_are_one_line_and_exit_2(tmp_path):
    out = fer("train", "--set", "lr=abc", "--data", tmp_path / "missing.csv")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error:") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    usage = fer("best", "--top", "zero")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
