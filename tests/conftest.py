"""Shared fixtures: an isolated data cache, the real FER-2013 (when present) and small CSVs."""

from __future__ import annotations

import gc
import gzip
import os
import shutil
from pathlib import Path

# pytest-xdist runs one test process per core: each, and what it starts, trains on one thread,
# so that TensorFlow's thread pools do not fight each other for the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import pytest

from fer_sweep.backend import pool_tensorflow_memory
from fer_sweep.data import write_synthetic_csv
from fer_sweep.fer2013 import SPLITS

# The in-process tests train with TensorFlow's memory pooled, as every fer-sweep command does.
pool_tensorflow_memory()

REPO = Path(__file__).resolve().parents[1]
REAL_SLICE_ROWS = 300


def _real_data_file() -> Path | None:
    """$FER2013_DATA, else ../shared/data/fer2013.csv.gz beside the repo; None if absent."""
    env = os.environ.get("FER2013_DATA", "")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "fer2013.csv.gz"
    return path if path.exists() else None


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own data cache, so none reads or writes ~/.cache/fer-sweep."""
    monkeypatch.setenv("FER_SWEEP_CACHE", str(tmp_path_factory.mktemp("fer-sweep-cache")))
    # No command a test runs measures a forecast's pace (a short fit of its own); the tests of
    # fer_sweep.lifecycle._forecast inject their measurement.
    monkeypatch.setenv("FER_SWEEP_MEASURE_PACE", "off")


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """The real FER-2013 file; the test is skipped without it."""
    path = _real_data_file()
    if path is None:
        pytest.skip("real FER-2013 not found (set FER2013_DATA or add ../shared/data)")
    return path


@pytest.fixture(scope="session")
def real_slice_csv(real_data_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain CSV with the first 300 rows of each split of the real data."""
    kept = dict.fromkeys(SPLITS, 0)
    out = tmp_path_factory.mktemp("real-slice") / "fer2013-slice.csv"
    opener = gzip.open if real_data_path.name.endswith(".gz") else open
    with opener(real_data_path, "rt", encoding="utf-8") as src, out.open("w") as dst:
        dst.write(next(src))
        for line in src:
            usage = line.rstrip("\r\n").rsplit(",", 1)[-1]
            if kept.get(usage, REAL_SLICE_ROWS) < REAL_SLICE_ROWS:
                kept[usage] += 1
                dst.write(line)
            # Rows are ordered Training, PublicTest, PrivateTest: stop once the last is full.
            if kept["PrivateTest"] == REAL_SLICE_ROWS:
                break
    return out


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic FER-2013-schema CSV (70 rows per split, all classes)."""
    return write_synthetic_csv(tmp_path_factory.mktemp("synthetic") / "synthetic.csv")


@pytest.fixture(scope="session")
def fer_csv(request: pytest.FixtureRequest, synthetic_csv: Path) -> Path:
    """The real 300-per-split slice when the real data exists, else the synthetic CSV."""
    if _real_data_file() is not None:
        return request.getfixturevalue("real_slice_csv")
    return synthetic_csv


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema and nothing else, made once per test process."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def _isolated_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every test gets its own mlruns/ (MLflow and Optuna), never the user's.

    It starts with a copy of an empty MLflow database: creating one runs MLflow's schema
    migrations (about 5 s), which every test and every subprocess would otherwise repeat.
    Experiments name their own artifact folder, so a copy is as good as a new database.
    Tests marked ``fresh_store`` start with no mlruns/ at all.
    """
    store = tmp_path / "mlruns"
    monkeypatch.setenv("FER_SWEEP_STORE", str(store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FER_SWEEP_STORAGE", raising=False)
    if request.node.get_closest_marker("fresh_store") is None:
        store.mkdir()
        shutil.copyfile(request.getfixturevalue("_empty_mlflow_db"), store / "mlflow.db")


@pytest.fixture(scope="session")
def fer_dataset(fer_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    """``fer_csv`` loaded (real slice or synthetic), cached in a session folder."""
    from fer_sweep.data import load_dataset

    return load_dataset(fer_csv, cache_dir=tmp_path_factory.mktemp("dataset-cache"))


@pytest.fixture(autouse=True)
def _frozen_heap():
    """Put what earlier tests left alive (TensorFlow, Keras and MLflow once imported: about a
    million objects) out of the garbage collector's sight before each test. Left in, every
    full collection walks them, and allocation-heavy code such as Optuna's in-memory storage
    (it copies trials) runs 5-10x slower than in a fresh process. Collecting first keeps
    garbage out of the frozen set, and each collection only walks what the last test made."""
    gc.collect()
    gc.freeze()


def fake_result(config, workdir: Path, callbacks=(), **_):
    """What :func:`fer_sweep.training.train` returns, without training: one epoch, PublicTest
    ``0.5 - fc_dropout / 4`` (so a sweep's arms rank by their dropout) and PrivateTest a point
    below. The epoch's logs go to the ``EpochLogger`` among ``callbacks``, as Keras would."""
    from fer_sweep.tracking._logging import EpochLogger
    from fer_sweep.training import SplitReport, TrainResult

    acc = 0.5 - config.fc_dropout / 4
    logs = {
        "loss": 1.5,
        "accuracy": acc + 0.1,
        "val_loss": 1.6,
        "val_accuracy": acc,
        "epoch_seconds": 0.1,
    }
    for callback in callbacks:
        if isinstance(callback, EpochLogger):
            callback.on_epoch_end(0, logs)
    report = SplitReport(accuracy=acc - 0.01, per_class=[acc] * 7, confusion=[[1] * 7] * 7)
    return TrainResult(
        config=config,
        epochs_trained=1,
        history={k: [v] for k, v in logs.items()},
        best_epoch=1,
        best_val_accuracy=acc,
        final_val_accuracy=acc,
        test_final=report,
        test_best=report,
        resumed_from_epoch=0,
        fit_seconds=0.1,
        eval_seconds=0.1,
        workdir=workdir,
    )


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch):
    """Sweeps in this process train nothing (:func:`fake_result`, in seconds), and every run is
    still logged by fer_sweep's own code (``tracked_train``, ``log_result``, the study's run)."""
    from fer_sweep.lifecycle import _attempt as attempt
    from fer_sweep.tracking import tracked_train as log_and_train

    def trainer(config, dataset, *, workdir, callbacks=(), stop_event=None, **_):
        return fake_result(config, workdir, callbacks)

    def tracked_train(*args, **kwargs):
        # In place of the trainer the runner hands in (fer_sweep.training.train).
        return log_and_train(*args, **{**kwargs, "trainer": trainer})

    monkeypatch.setattr(attempt, "tracked_train", tracked_train)
    return trainer


@pytest.fixture
def tiny_sweep(tmp_path: Path) -> Path:
    """A two-arm grid sweep file (dropout "0.3 all" and "off", 60 images, 1 epoch): its study
    is ``tiny-tiny``."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        """\
name: tiny
description: Does dropout help? A two-arm check on a small slice.
base: {arch: C, batch_size: 32, optimizer: adam, lr: 1.0e-3, schedule: constant}
space:
  dropout:
    type: categorical
    choices:
      "0.3 all": {conv_dropout: 0.3, fc_dropout: 0.3}
      "off": {conv_dropout: 0.0, fc_dropout: 0.0}
sampler: grid
budgets: {tiny: {subset: 60, epochs: 1}}
default_budget: tiny
"""
    )
    return path
