"""The JAX path, shown on the CPU: a trial compiles its train step twice whatever its epochs
do, and a second process finds the compiled steps in fer-sweep's JAX compilation cache.

Two ``fer_sweep train`` processes run the same tiny trial under ``KERAS_BACKEND=jax`` with
``JAX_LOG_COMPILES=1``, which makes JAX log every compilation and every persistent-cache hit.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)"),
]

DATA = Path(__file__).resolve().parent / "fixtures" / "resume-v1" / "fer2013-tiny.csv.gz"
# 40 training images in batches of 16: two full batches and a last one of 8 every epoch. A
# plateau schedule with a patience of 1 changes the rate (a Python float) between epochs.
TRIAL = """
arch: A
optimizer: adam
lr: 0.01
schedule: reduce_on_plateau
plateau_patience: 1
step_factor: 0.5
batch_size: 16
epochs: 4
seed: 3
"""
COMPILED = "Finished XLA compilation of jit(train_step)"
CACHE_HIT = "Persistent compilation cache hit for 'jit_train_step'"


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Both processes' stderr, the cache folder after the first and the store."""
    root = tmp_path_factory.mktemp("jax-ready")
    (root / "trial.yaml").write_text(TRIAL)
    # A module's fixture runs before conftest's per-test isolation: drop what earlier tests in
    # this process may have left in the environment, and name the stores outright.
    skip = ("JAX_", "XLA_", "MLFLOW_", "FER_SWEEP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        KERAS_BACKEND="jax",
        JAX_LOG_COMPILES="1",
        FER_SWEEP_CACHE=str(root / "cache"),
        FER_SWEEP_STORE=str(root / "mlruns"),
        # JAX caches only what took a second or more to compile; on a fast machine a
        # step of this tiny model may not, so every compilation is cached here.
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    logs, entries = [], None
    for _ in range(2):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fer_sweep",
                "train",
                "--config",
                str(root / "trial.yaml"),
                "--data",
                str(DATA),
                "--no-progress",
                "--tracking-uri",
                f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=root,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "epochs 4" in out.stdout
        logs.append(out.stderr)
        if entries is None:
            entries = sorted(p.name for p in (root / "cache" / "jax").iterdir())
    return logs, entries, root


def test_a_trial_compiles_its_train_step_twice_over_all_its_epochs(two_processes):
    logs, _, root = two_processes
    # The full batch and the epoch's last, smaller one; never again in epochs 2-4, though
    # the plateau schedule changed the learning rate in between.
    assert logs[0].count(COMPILED) == 2, logs[0][-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("fer-sweep-train").experiment_id],
        filter_string="attributes.start_time > 0",
        max_results=1,
        order_by=["attributes.start_time ASC"],
    )
    rates = [m.value for m in client.get_metric_history(run.info.run_id, "train/learning_rate")]
    assert len(rates) == 4 and len(set(rates)) > 1, rates


def test_a_second_process_loads_the_train_steps_from_the_compilation_cache(two_processes):
    logs, entries, _ = two_processes
    # The first process wrote both train steps into $FER_SWEEP_CACHE/jax ...
    assert sum(name.startswith("jit_train_step-") for name in entries) == 2, entries
    assert CACHE_HIT not in logs[0]
    # ... and the second one found both there instead of compiling them.
    assert logs[1].count(CACHE_HIT) == 2, logs[1][-3000:]
