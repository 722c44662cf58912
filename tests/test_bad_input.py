"""The malformed-input corpus, through the real CLI: each case is one ``error:`` line on stderr,
exit code 2 and no traceback. Data cases go through ``data check``; sweep files are refused by
``sweep`` before any training; then a bad ``--set`` and an unknown study.

Images that are not 48x48 are refused, not resized (the message says so).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HEADER = "emotion,pixels,Usage\n"
PIXELS = " ".join(["128"] * 2304)
GOOD_ROW = f"3,{PIXELS},Training\n"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fer_sweep", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def assert_one_line(done: subprocess.CompletedProcess, code: int, *expected: str) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    for word in expected:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]


def assert_one_line_error(done: subprocess.CompletedProcess, *expected: str) -> str:
    """A user's mistake: one error line, exit 2."""
    return assert_one_line(done, 2, *expected)


# --- data files --------------------------------------------------------------------------


def _csv(tmp: Path, body: str, name: str = "bad.csv") -> Path:
    path = tmp / name
    path.write_text(body)
    return path


def truncated_gzip(tmp: Path) -> Path:
    full = gzip.compress((HEADER + GOOD_ROW * 50).encode())
    path = tmp / "truncated.csv.gz"
    path.write_bytes(full[: len(full) // 2])
    return path


def binary_file(tmp: Path) -> Path:
    path = tmp / "binary.csv"
    path.write_bytes(bytes(range(256)) * 40)
    return path


def image_folder(tmp: Path, *, emotion: str = "happy", size: int = 48) -> Path:
    root = tmp / "images"
    for split in ("train", "val", "test"):
        folder = root / split / emotion
        folder.mkdir(parents=True)
        Image.fromarray(np.full((size, size), 100, np.uint8)).save(folder / "0.png")
    return root


DATA_CASES = {
    "truncated gzip": (truncated_gzip, ["truncated"]),
    "2303 pixels": (
        lambda t: _csv(t, HEADER + "3," + " ".join(["1"] * 2303) + ",Training\n"),
        ["2303"],
    ),
    "pixel 256": (
        lambda t: _csv(t, HEADER + "3," + " ".join(["256"] * 2304) + ",Training\n"),
        ["256"],
    ),
    "label 7": (lambda t: _csv(t, HEADER + f"7,{PIXELS},Training\n"), ["7"]),
    "unknown Usage": (lambda t: _csv(t, HEADER + f"3,{PIXELS},Validation\n"), ["Validation"]),
    "empty file": (lambda t: _csv(t, ""), ["empty"]),
    "binary file": (binary_file, []),
    "missing column": (lambda t: _csv(t, "emotion,pixels\n" + f"3,{PIXELS}\n"), ["Usage"]),
    "unknown emotion folder": (lambda t: image_folder(t, emotion="bored"), ["bored"]),
    "64x64 image": (lambda t: image_folder(t, size=64), ["48x48", "resized"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_line(tmp_path, case):
    make, expected = DATA_CASES[case]
    path = make(tmp_path)
    line = assert_one_line_error(
        run_cli("data", "check", "--data", str(path), cwd=tmp_path), *expected
    )
    assert path.name in line or str(path) in line, line


# --- sweep files -------------------------------------------------------------------------

SWEEP = """\
name: bad
base: {{arch: C, epochs: 1}}
space:
  {space}
{extra}
budgets: {{tiny: {{subset: 60, epochs: 1}}}}
default_budget: tiny
n_trials: 2
"""
SWEEP_CASES = {
    "unknown key": ("lr: {type: float, low: 0.001, high: 0.1}", "colour: red", ["colour"]),
    "low above high": ("lr: {type: float, low: 0.1, high: 0.001}", "", ["low"]),
    "log range through 0": ("decay: {type: float, low: 0.0, high: 0.1, log: true}", "", ["log"]),
    "condition on a missing parameter": (
        "momentum: {type: float, low: 0.8, high: 0.99, when: {optimiser: sgd}}",
        "",
        ["optimiser"],
    ),
    "unknown sampler": (
        "lr: {type: float, low: 0.001, high: 0.1}",
        "sampler: annealing",
        ["annealing"],
    ),
    "unknown pruner": (
        "lr: {type: float, low: 0.001, high: 0.1}",
        "pruner: {type: guess}",
        ["guess"],
    ),
}


@pytest.mark.fresh_store
@pytest.mark.parametrize("case", list(SWEEP_CASES))
def test_bad_sweep_file_is_refused_before_training(tmp_path, case, synthetic_csv):
    space, extra, expected = SWEEP_CASES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(SWEEP.format(space=space, extra=extra))
    done = run_cli("sweep", str(path), "--no-live", "--data", str(synthetic_csv), cwd=tmp_path)
    assert_one_line_error(done, "bad.yaml", *expected)
    assert not (tmp_path / "mlruns").exists()  # nothing was created, let alone trained


# --- options -----------------------------------------------------------------------------


def test_bad_set_value_is_one_line(tmp_path, synthetic_csv):
    done = run_cli(
        "train", "--set", "lr=abc", "--data", str(synthetic_csv), "--epochs", "1", cwd=tmp_path
    )
    assert_one_line_error(done, "lr")


@pytest.mark.parametrize("command", ["best", "worker"])
def test_unknown_study_is_one_line(tmp_path, command):
    line = assert_one_line_error(run_cli(command, "--study", "nope", cwd=tmp_path), "nope")
    assert "studies: none" in line  # it says what there is instead


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("best", "--tta"), "--ensemble"),
        (("best", "--ensemble"), "--study"),
        (("reproduce", "--recipe", "thesis-top9"), "thesis-top9"),
        (("reproduce", "--seeds", "0,x"), "--seeds"),
    ],
)
def test_ensemble_and_reproduce_options_are_checked_first(tmp_path, args, words):
    assert_one_line_error(run_cli(*args, cwd=tmp_path), words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("report", "nope"), "no study 'nope'"),
        (("report", "nope", "--format", "xml"), "--format xml"),
        (("predictions", "backfill", "."), "no result.json"),
    ],
)
def test_report_and_backfill_inputs_are_one_line(tmp_path, args, words):
    assert_one_line_error(run_cli(*args, cwd=tmp_path), words)


def test_report_on_a_study_without_finished_trials_is_one_line(tmp_path):
    sweep_file = Path(__file__).resolve().parents[1] / "sweeps" / "dropout.yaml"
    created = run_cli("study", "create", str(sweep_file), "--budget", "smoke", cwd=tmp_path)
    assert created.returncode == 0, created.stderr[-2000:]
    done = run_cli("report", "dropout-smoke", cwd=tmp_path)
    assert_one_line_error(done, "dropout-smoke has no finished trial")


@pytest.mark.fresh_store
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("sweep", "dropout", "--jobs", "0"), ["--jobs", "greater than or equal to 1"]),
        (("sweep", "dropout", "--timeout", "abc"), ["--timeout", "number"]),
        (("worker",), ["--study"]),
        (("sweep", "dropout", "--no-such-option"), ["--no-such-option"]),
    ],
)
def test_usage_errors_are_the_same_one_line(tmp_path, args, words):
    """Typer's own usage errors, not only ours: one line (no box), exit 2."""
    assert_one_line_error(run_cli(*args, cwd=tmp_path), *words)
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.fresh_store
def test_an_unknown_budget_is_refused_before_the_data_is_loaded(tmp_path):
    # No data at all: had it been loaded first, the error would be about the missing data.
    done = run_cli("sweep", "dropout", "--budget", "nope", cwd=tmp_path)
    assert_one_line_error(done, "budget 'nope'", "smoke")
    done = run_cli("study", "create", "dropout", "--budget", "nope", cwd=tmp_path)
    assert_one_line_error(done, "budget 'nope'")
    assert not (tmp_path / "mlruns").exists()  # no empty mlflow.db left behind


@pytest.mark.fresh_store
@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.mkdir(), ["is a folder, not a sweep file"]),
        (lambda p: p.write_text(""), ["is empty"]),
        (lambda p: p.write_text("# only a comment\n"), ["is empty"]),
        (lambda p: p.write_text("- a\n- b\n"), ["got a list"]),
    ],
)
def test_a_sweep_file_that_is_not_one_says_what_it_is(tmp_path, make, words):
    path = tmp_path / "odd.yaml"
    make(path)
    line = assert_one_line_error(run_cli("sweep", str(path), cwd=tmp_path), *words)
    assert "NoneType" not in line and "no such file" not in line


def _store_run(status: str, **tags: str) -> str:
    """A run in this test's MLflow store, ended with ``status``, with one metric row."""
    from mlflow.tracking import MlflowClient

    from fer_sweep.settings import Settings

    client = MlflowClient(Settings.resolve().tracking_uri)
    exp = client.create_experiment("fer-sweep-train")
    run = client.create_run(exp, tags=tags)
    client.log_param(run.info.run_id, "arch", "C")
    client.log_metric(run.info.run_id, "PublicTest/accuracy", 0.5, step=1)
    client.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.mark.parametrize(
    ("status", "tags", "words"),
    [
        ("FINISHED", {}, ["finished", "never written again"]),
        ("KILLED", {"optuna.trial": "0", "optuna.study": "dropout-smoke"}, ["trial 0"]),
        ("FINISHED", {"optuna.trial": "3", "optuna.study": "dropout-smoke"}, ["dropout-smoke"]),
    ],
)
def test_train_resume_never_writes_a_finished_run_or_a_sweeps(
    tmp_path, synthetic_csv, status, tags, words
):
    from mlflow.tracking import MlflowClient

    from fer_sweep.settings import Settings

    run_id = _store_run(status, **tags)
    done = run_cli("train", "--resume", run_id, "--data", str(synthetic_csv), cwd=tmp_path)
    assert_one_line_error(done, run_id, *words)
    run = MlflowClient(Settings.resolve().tracking_uri).get_run(run_id)
    assert run.info.status == status  # not reopened
    history = MlflowClient(Settings.resolve().tracking_uri).get_metric_history(
        run_id, "PublicTest/accuracy"
    )
    assert len(history) == 1  # no rows added


# --- data that would train on nothing -----------------------------------------------------


def _split_rows(tmp: Path, *splits: str) -> Path:
    rows = "".join(f"{k % 7},{PIXELS},{split}\n" for split in splits for k in range(14))
    return _csv(tmp, HEADER + rows, "partial.csv")


def _folder_without_val(tmp: Path) -> Path:
    root = image_folder(tmp)
    shutil.rmtree(root / "val")
    return root


EMPTY_SPLIT_CASES = {
    "no PublicTest rows": (lambda t: _split_rows(t, "Training", "PrivateTest"), ["PublicTest"]),
    "only Training rows": (lambda t: _split_rows(t, "Training"), ["PublicTest", "PrivateTest"]),
    "folder without val": (_folder_without_val, ["PublicTest"]),
}


@pytest.mark.fresh_store
@pytest.mark.parametrize("case", list(EMPTY_SPLIT_CASES))
@pytest.mark.parametrize("command", ["data check", "train", "sweep"])
def test_a_dataset_with_an_empty_split_is_refused_before_anything_is_written(
    tmp_path, case, command
):
    make, words = EMPTY_SPLIT_CASES[case]
    path = make(tmp_path)
    args = {
        "data check": ["data", "check"],
        "train": ["train", "--preset", "thesis-top1"],
        "sweep": ["sweep", "dropout", "--budget", "smoke", "--no-live"],
    }[command]
    done = run_cli(*args, "--data", str(path), cwd=tmp_path)
    assert_one_line_error(done, path.name, "no", *words)
    assert not (tmp_path / "mlruns").exists()


def test_a_class_absent_from_a_split_has_no_accuracy():
    from fer_sweep.tracking import final_metrics
    from fer_sweep.training import report_of

    report = report_of(np.array([0, 0, 3, 3]), np.array([0, 1, 3, 3]))
    assert report.per_class[0] == 0.5 and report.per_class[3] == 1.0
    assert report.per_class[1] is None and report.per_class[6] is None  # n/a, not 0.0
    assert report.accuracy == 0.75

    class Result:  # the fields final_metrics reads
        epochs_trained = best_epoch = 1
        best_val_accuracy = final_val_accuracy = fit_seconds = eval_seconds = 0.5
        test_final = test_best = report
        test_final_tencrop = test_best_tencrop = None  # a network that saw all 48 px
        history: dict = {}

    logged = final_metrics(Result())
    assert "PrivateTest_per_class/final/angry" in logged
    assert not any(k.endswith("/disgust") for k in logged)  # no metric rather than 0.0


# --- damaged, read-only and malformed stores ----------------------------------------------


@pytest.mark.fresh_store
@pytest.mark.parametrize("store", ["mlflow.db", "optuna.db"])
def test_a_truncated_store_is_one_line_naming_the_file(tmp_path, _empty_mlflow_db, store):
    (tmp_path / "mlruns").mkdir()
    if store == "optuna.db":  # a whole MLflow store beside a damaged Optuna one
        shutil.copyfile(_empty_mlflow_db, tmp_path / "mlruns" / "mlflow.db")
    whole = _empty_mlflow_db.read_bytes()
    (tmp_path / "mlruns" / store).write_bytes(whole[: len(whole) // 3])
    done = run_cli("study", "create", "dropout", "--budget", "smoke", cwd=tmp_path)
    assert_one_line(done, 1, str(tmp_path / "mlruns" / store), "damaged")


@pytest.fixture
def read_only_store(tmp_path, _empty_mlflow_db):
    """mlruns/ on a read-only bind mount (root ignores file modes, not a read-only mount)."""
    source = tmp_path / "src"
    source.mkdir()
    shutil.copyfile(_empty_mlflow_db, source / "mlflow.db")
    target = tmp_path / "ro"
    target.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], capture_output=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.decode().strip()}")
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


@pytest.mark.fresh_store
def test_a_read_only_store_says_read_only(tmp_path, read_only_store, monkeypatch):
    monkeypatch.setenv("FER_SWEEP_STORE", str(read_only_store))
    elsewhere = f"sqlite:///{tmp_path / 'writable' / 'optuna.db'}"
    done = run_cli(
        "study", "create", "dropout", "--budget", "smoke", "--storage", elsewhere, cwd=tmp_path
    )
    assert_one_line(done, 1, str(read_only_store / "mlflow.db"), "read-only")
    tracking = f"sqlite:///{tmp_path / 'writable' / 'mlflow.db'}"
    done = run_cli(
        "study", "create", "dropout", "--budget", "smoke", "--tracking-uri", tracking, cwd=tmp_path
    )
    assert_one_line(done, 1, str(read_only_store / "optuna.db"), "read-only")


@pytest.mark.fresh_store
@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("--storage", "postgresql://nobody@127.0.0.1:port/optuna"),
        ("--storage", "postgresql//nobody@127.0.0.1/optuna"),
        ("--tracking-uri", "http://127.0.0.1:port"),
        ("--tracking-uri", "htp://127.0.0.1"),
    ],
)
def test_a_url_that_cannot_be_parsed_is_malformed_not_unreachable(tmp_path, option, url):
    line = assert_one_line_error(run_cli("best", option, url, cwd=tmp_path), "malformed")
    assert "unreachable" not in line
    assert not (tmp_path / "mlruns").exists()
