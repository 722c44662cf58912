"""A run folder written by earlier code resumes under this code (issue 18).

``tests/fixtures/resume-v1/`` is a reproduce run folder stopped after epoch 1, written by the
commit named in its ``PROVENANCE.json`` and committed as it came out
(``tests/fixtures/make_resume_fixture.py`` wrote it). A change to the checkpoint's layout,
to ``state.json``'s fields, to the config's fields or to what the trainer computes shows
up here: the reproduction's folders under ``results/work/`` must keep resuming through them.
"""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest

from fer_sweep.config import TrainConfig
from fer_sweep.data import load_dataset
from fer_sweep.reporting._reproduction import _note_session
from fer_sweep.reporting._reproduction_report import sessions
from fer_sweep.training import STATE_FILE, checkpoint_epoch, checkpoint_path, train

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_resume_fixture", FIXTURES / "make_resume_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    gen = _generator()
    data = load_dataset(gen.DATA, cache_dir=tmp_path_factory.mktemp("resume-v1-cache"))
    return gen, data


def test_the_fixture_is_the_committed_layout(fixture):
    gen, _ = fixture
    ckpt = checkpoint_path(gen.RUN)
    assert sorted(p.name for p in ckpt.iterdir()) == ["best.weights.h5", "model.keras", STATE_FILE]
    assert checkpoint_epoch(gen.RUN) == gen.STOPPED_AFTER
    saved = json.loads((ckpt / STATE_FILE).read_text())
    # The config it was written with still validates, and is the generator's.
    assert TrainConfig(**saved["config"]) == gen.fixture_config()
    assert (gen.FIXTURE / "PROVENANCE.json").exists()
    total = sum(f.stat().st_size for f in gen.FIXTURE.rglob("*") if f.is_file())
    assert total < 5_500_000  # Type A's two weight copies are most of it


def test_the_committed_run_resumes_and_continues_the_uninterrupted_one(fixture, tmp_path):
    gen, data = fixture
    folder = tmp_path / "tiny-seed3"
    shutil.copytree(gen.RUN, folder)
    before = json.loads((checkpoint_path(folder) / STATE_FILE).read_text())["state"]
    _note_session(folder)  # what reproduce does before each start
    config = gen.fixture_config()

    resumed = train(config, data, workdir=folder)
    assert resumed.resumed_from_epoch == gen.STOPPED_AFTER
    assert resumed.epochs_trained == config.epochs == checkpoint_epoch(folder)
    # Epoch 1 is the fixture's, carried over; epoch 2 was trained now, at the dropped rate.
    for key, values in before["history"].items():
        assert resumed.history[key][: gen.STOPPED_AFTER] == values, key
    assert resumed.history["lr"] == pytest.approx([0.01, 0.001])
    assert [(s.first_epoch, s.last_epoch) for s in sessions(folder)] == [(1, 1), (2, 2)]

    # The epoch after the resume is the one an uninterrupted run of today's code trains, as
    # tests/test_train.py holds for a run stopped and resumed by the same code.
    whole = train(config, data, workdir=tmp_path / "whole")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed.history[key] == pytest.approx(whole.history[key], rel=1e-4, abs=1e-5), key
    assert resumed.test_final.accuracy == pytest.approx(whole.test_final.accuracy, abs=0.01)


# The GPU machine trains on JAX: a folder checkpointed on TensorFlow goes on there.
_RESUME_ON_JAX = """
import json, sys
from fer_sweep.backend import keep_tensorflow_out
keep_tensorflow_out()
sys.path.insert(0, sys.argv[3])
from make_resume_fixture import fixture_config
from fer_sweep.data import load_dataset
from fer_sweep.training import train
result = train(fixture_config(), load_dataset(sys.argv[1], cache_dir=sys.argv[2] + "-cache"),
               workdir=sys.argv[2])
print(json.dumps({"resumed_from": result.resumed_from_epoch, "history": result.history,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)")
def test_the_committed_run_resumes_on_jax(fixture, tmp_path):
    import os
    import subprocess
    import sys

    gen, _ = fixture
    folder = tmp_path / "tiny-seed3"
    shutil.copytree(gen.RUN, folder)
    out = subprocess.run(
        [sys.executable, "-c", _RESUME_ON_JAX, str(gen.DATA), str(folder), str(FIXTURES)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["resumed_from"] == gen.STOPPED_AFTER and not got["tensorflow"]
    before = json.loads((checkpoint_path(gen.RUN) / STATE_FILE).read_text())["state"]
    assert got["history"]["loss"][0] == before["history"]["loss"][0]
    assert got["history"]["lr"] == pytest.approx([0.01, 0.001])
    assert len(got["history"]["loss"]) == 2 and all(map(math.isfinite, got["history"]["loss"]))
