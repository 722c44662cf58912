"""The throughput benchmark: the project's trainer beside the obvious hand-written baseline.

One call measures, in one process:

- data: seconds to parse the source into a fresh cache, then to load that cache;
- training images/second at steady state (warm-up and tracing excluded), the thesis
  augmentation on, batch 64, for the reference (``model.fit`` on in-memory float32 arrays
  with Keras RandomRotation/RandomZoom/RandomFlip inside the model, float32) and for the
  project's trainer exactly as a sweep trial builds it (``training_model``,
  ``compile_model``, ``training_input``, the config's precision); rounds alternate so both
  see the same load;
- the same trainer on the JAX backend, in a second process that runs a round whenever this
  one asks, so its rounds alternate with the TensorFlow ones (when JAX is installed);
- on TensorFlow, the same trainer with TensorFlow's default CPU allocator (malloc) in a
  second process, against this process's pooled (BFC) memory, as every command sets it up
  (:func:`fer_sweep.backend.pool_tensorflow_memory`);
- evaluation images/second the same way (``model.evaluate`` on float32 arrays versus the
  training model's evaluation inputs, as the trainer validates);
- the orchestrator's per-trial overhead: a smoke trial run by a sweep worker (Optuna study,
  MLflow run, checkpoints, plots) minus the time spent inside training and evaluation.

Run from the repository root (``make bench`` does)::

    python -m benchmarks [--arch A..F] [--quick] [--data PATH] [--out DIR]

or from Python::

    result = run_benchmark(data="data/fer2013.csv.gz", quick=True)
    print(render(result))

It lives beside the library, not in it: it measures the trainer and is no part of a sweep.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fer_sweep.config import TrainConfig, load_config
from fer_sweep.data import load_dataset
from fer_sweep.model import build_model
from fer_sweep.training import BatchClock, project_fitter

__all__ = ["render", "run_benchmark"]

PRESET = "thesis-top1"  # Type C (or --arch), augmentation on, batch 64, Adam
QUICK_EPOCHS = 10  # the `quick` budget: 10 epochs on all images


def _reference_model(config: TrainConfig) -> keras.Model:
    """What a user writes by hand: Keras augmentation layers in front of the network."""
    z = (-config.zoom, config.zoom)
    inputs = keras.Input((48, 48, 1))
    x = keras.layers.RandomRotation(config.rotation / 360.0, fill_mode=config.fill_mode)(inputs)
    x = keras.layers.RandomZoom(z, z, fill_mode=config.fill_mode)(x)
    x = keras.layers.RandomFlip("horizontal")(x)
    return keras.Model(inputs, build_model(config)(x), name="reference")


def _tile(images: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    reps = math.ceil(n / len(images))
    return np.concatenate([images] * reps)[:n], np.concatenate([labels] * reps)[:n]


def _steps_per_epoch(dataset, config: TrainConfig) -> int:
    # The schedule as a trial on the whole training split would have it.
    return math.ceil(len(dataset.arrays("Training")[1]) / config.batch_size)


def serve_rounds() -> None:
    """The second process of the backend comparison: one training round per stdin line.

    Started by :func:`_compare_backends` with ``KERAS_BACKEND`` set and the benchmark's
    settings as JSON in argv; prints ``ready`` once built, then one images/s per round.
    """

    from fer_sweep.backend import keep_tensorflow_out

    keep_tensorflow_out()
    opts = json.loads(sys.argv[1])
    dataset = load_dataset(opts["data"])
    config = load_config(preset=PRESET, arch=opts["arch"])
    bs = config.batch_size
    x_train, y_train = _tile(*dataset.arrays("Training"), min(32 * bs, 4 * opts["steps"] * bs))
    fit, _ = project_fitter(
        config, x_train, y_train, steps_per_epoch=_steps_per_epoch(dataset, config)
    )
    print("ready", keras.backend.backend(), flush=True)
    for _ in sys.stdin:
        print(fit(opts["steps"], opts["skip"]), flush=True)


@contextlib.contextmanager
def _trainer_elsewhere(
    env: dict[str, str], data, arch, steps, skip
) -> Iterator[Callable[[], float]]:
    """The trainer in a second process started with ``env`` added to this one's environment
    (another backend, another allocator); yields a function that runs one round there and
    returns its images/s, so its rounds can alternate with this process's."""
    import subprocess

    opts = json.dumps({"data": str(data), "arch": arch, "steps": steps, "skip": skip})
    cmd = [sys.executable, "-c", "from benchmarks.bench import serve_rounds; serve_rounds()", opts]
    # The repository root on the path, so the second process imports this module from any cwd.
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    with subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": path, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"the benchmark process with {env} did not start: {line!r}")

        def one_round() -> float:
            proc.stdin.write("round\n")
            proc.stdin.flush()
            return float(proc.stdout.readline())

        try:
            yield one_round
        finally:
            proc.stdin.close()


def _compare_backends(data, arch, rounds, steps, skip, fit_tensorflow) -> dict[str, Any] | None:
    """The trainer on JAX (second process) against TensorFlow (here), rounds alternating."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        return None
    with _trainer_elsewhere({"KERAS_BACKEND": "jax"}, data, arch, steps, skip) as jax_round:
        return _alternate(
            {"tensorflow": lambda: fit_tensorflow(steps, skip), "jax": jax_round},
            rounds,
            ratio=("jax", "tensorflow"),
        )


def _compare_allocators(data, arch, rounds, steps, skip, fit_pooled) -> dict[str, Any]:
    """The trainer with TensorFlow's CPU memory pooled (here, as every fer-sweep command runs)
    against TensorFlow's default malloc allocator (second process), rounds alternating."""
    from fer_sweep.backend import POOLED_ALLOCATOR

    env = {POOLED_ALLOCATOR[0]: "false"}
    with _trainer_elsewhere(env, data, arch, steps, skip) as malloc_round:
        return _alternate(
            {"malloc": malloc_round, "pooled": lambda: fit_pooled(steps, skip)},
            rounds,
            ratio=("pooled", "malloc"),
        )


def _alternate(
    variants: dict[str, Callable[[], float]],
    rounds: int,
    ratio: tuple[str, str] = ("project", "reference"),
) -> dict[str, Any]:
    """Run each variant once per round, in turn; the first round is warm-up (tracing)."""
    seen: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds + 1):
        for name, measure in variants.items():
            value = measure()
            if r > 0:
                seen[name].append(value)
    out: dict[str, Any] = {
        name: {"median": statistics.median(v), "rounds": v} for name, v in seen.items()
    }
    out["ratio"] = out[ratio[0]]["median"] / out[ratio[1]]["median"]
    out["ratio_of"] = f"{ratio[0]}/{ratio[1]}"
    return out


def _smoke_trial(data: Path, arch: str) -> dict[str, float]:
    """One smoke-budget trial through a sweep worker; wall time and time inside train/eval."""
    import yaml

    from fer_sweep import metric_names as names
    from fer_sweep.lifecycle import create_or_resume, open_worker
    from fer_sweep.search import load_sweep
    from fer_sweep.settings import Settings
    from fer_sweep.tracking import connect

    base = {k: v for k, v in load_config(preset=PRESET, arch=arch).model_dump().items()}
    base = {k: list(v) if isinstance(v, tuple) else v for k, v in base.items()}
    base.pop("subset")
    with tempfile.TemporaryDirectory(prefix="fer-sweep-bench-") as tmp:
        # A throw-away MLflow/Optuna store (not the environment's): the user's is left alone.
        settings = Settings.resolve(store_dir=Path(tmp) / "mlruns", environ={})
        sweep = Path(tmp) / "bench_smoke.yaml"
        sweep.write_text(
            yaml.safe_dump(
                {
                    "base": base,
                    "space": {"arch": {"type": "fixed", "value": arch}},
                    "n_trials": 1,
                    "pruner": "none",
                    "default_budget": "smoke",
                }
            )
        )
        study = create_or_resume(load_sweep(sweep), settings, budget="smoke")
        worker = open_worker(study.study_name, settings, data=str(data), max_trials=1)
        start = time.perf_counter()
        ran = worker.run()
        wall = time.perf_counter() - start
        if ran != 1:
            raise RuntimeError(f"the smoke trial did not run ({ran} trials)")
        run_id = study.get_trials()[0].user_attrs["mlflow_run_id"]
        metrics = connect(settings.tracking_uri).get_run(run_id).data.metrics
    fit, evaluation = metrics[names.FIT_SECONDS], metrics[names.EVAL_SECONDS]
    return {
        "wall_s": wall,
        "fit_s": fit,
        "eval_s": evaluation,
        "overhead_s": wall - fit - evaluation,
    }


def run_benchmark(
    *,
    data: str | Path,
    arch: str = "C",
    quick: bool = False,
    out_dir: Path | None = Path("benchmarks/results"),
    rounds: int | None = None,
    steps: int | None = None,
    overhead: bool = True,
    backends: bool = True,
    allocators: bool = True,
) -> dict[str, Any]:
    """Measure data loading, training and evaluation throughput and the per-trial overhead.

    Args:
        data: the FER-2013 source (CSV, CSV.gz or folder).
        arch: the architecture, A-F (the thesis-top1 recipe otherwise).
        quick: fewer and shorter rounds (3 of 12 batches instead of 5 of 30).
        out_dir: where the JSON result goes (``bench-<arch>-<quick|full>-<time>.json``);
            None writes nothing.
        rounds, steps: override the number of measured rounds and the batches per round.
        overhead: also run a smoke trial through a sweep worker.
        backends: also run the trainer on JAX in a second process (when JAX is installed),
            alternating its rounds with this process's TensorFlow ones.
        allocators: on TensorFlow, also run the trainer with TensorFlow's default (malloc)
            CPU allocator in a second process, against this process's pooled one.
    """
    rounds = rounds or (3 if quick else 5)
    steps = steps or (12 if quick else 30)
    skip = max(1, min(5, steps // 4))  # batches of warm-up within a round (iterator, prefetch)
    result: dict[str, Any] = {
        "arch": arch,
        "quick": quick,
        "rounds": rounds,
        "steps_per_round": steps,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
        },
    }

    # --- data ---------------------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="fer-sweep-bench-cache-") as cache:
        t0 = time.perf_counter()
        dataset = load_dataset(data, cache_dir=cache)
        t1 = time.perf_counter()
        dataset = load_dataset(data, cache_dir=cache)
        t2 = time.perf_counter()
    result["data"] = {"parse_s": t1 - t0, "cache_load_s": t2 - t1, "rows": len(dataset)}

    # --- training and evaluation throughput ---------------------------------------------
    from fer_sweep.training import eval_inputs, make_optimizer

    config = load_config(preset=PRESET, arch=arch)
    result["config"] = config.model_dump(mode="json")
    bs = config.batch_size
    x_train, y_train = _tile(*dataset.arrays("Training"), min(32 * bs, 4 * steps * bs))
    x_eval, y_eval = _tile(*dataset.arrays("PublicTest"), 8 * steps * bs)

    keras.utils.clear_session(free_memory=True)
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy("float32")
    reference = _reference_model(config)
    reference.compile(
        optimizer=make_optimizer(config, _steps_per_epoch(dataset, config)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    fit_project, project = project_fitter(
        config, x_train, y_train, steps_per_epoch=_steps_per_epoch(dataset, config)
    )
    # Raw pixels: the network rescales them itself (its first layer).
    xf_train = x_train[..., None].astype("float32")
    xf_eval = x_eval[..., None].astype("float32")
    project_eval = eval_inputs(x_eval)

    def fit_reference() -> float:
        clock = BatchClock(bs, skip)
        reference.fit(
            xf_train,
            y_train,
            batch_size=bs,
            epochs=1,
            steps_per_epoch=steps,
            verbose=0,
            callbacks=[clock],
        )
        return clock.rate()

    def timed(call: Callable[[], Any]) -> float:
        start = time.perf_counter()
        call()
        return len(x_eval) / (time.perf_counter() - start)

    result["train"] = _alternate(
        {"reference": fit_reference, "project": lambda: fit_project(steps, skip)}, rounds
    )
    result["eval"] = _alternate(
        {
            "reference": lambda: timed(
                lambda: reference.evaluate(xf_eval, y_eval, batch_size=bs, verbose=0)
            ),
            "project": lambda: timed(
                lambda: project.evaluate(project_eval, y_eval, batch_size=256, verbose=0)
            ),
        },
        rounds,
    )
    if keras.backend.backend() == "tensorflow":
        from fer_sweep.backend import tensorflow_allocator

        result["machine"]["tensorflow_allocator"] = tensorflow_allocator()
        if backends:
            result["backends"] = _compare_backends(data, arch, rounds, steps, skip, fit_project)
        # Pooling turned off by the user: this process is the malloc side, nothing to compare.
        if allocators and result["machine"]["tensorflow_allocator"] != "malloc":
            result["allocator"] = _compare_allocators(data, arch, rounds, steps, skip, fit_project)
    keras.utils.clear_session(free_memory=True)

    # --- orchestrator overhead ----------------------------------------------------------
    if overhead:
        smoke = _smoke_trial(Path(data), arch)
        n_train = int((dataset.split == 0).sum())
        n_eval = int((dataset.split == 1).sum())
        # A quick trial: 10 epochs on all images, PublicTest every epoch, PrivateTest twice.
        quick_s = (
            QUICK_EPOCHS * n_train / result["train"]["project"]["median"]
            + (QUICK_EPOCHS + 2) * n_eval / result["eval"]["project"]["median"]
        )
        smoke["pct_of_smoke_trial"] = 100 * smoke["overhead_s"] / smoke["wall_s"]
        smoke["quick_trial_estimate_s"] = quick_s
        smoke["pct_of_quick_trial"] = 100 * smoke["overhead_s"] / (quick_s + smoke["overhead_s"])
        result["overhead"] = smoke

    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = out_dir / f"bench-{arch}-{'quick' if quick else 'full'}-{stamp}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        result["written_to"] = str(path)
    return result


def render(result: dict[str, Any]) -> str:
    """The result as one plain-text table."""
    d, tr, ev = result["data"], result["train"], result["eval"]
    kind = "quick" if result["quick"] else "full"
    lines = [
        f"fer-sweep benchmark: Type {result['arch']}, {kind} "
        f"({result['rounds']} rounds x {result['steps_per_round']} batches, "
        f"{result['machine']['cpus']} CPUs, precision {result['config']['precision']})",
        f"{'measure':<40}{'reference':>12}{'fer-sweep':>12}{'ratio':>8}",
        f"{'data: parse source (s)':<40}{'':>12}{d['parse_s']:>12.2f}",
        f"{'data: load cache (s)':<40}{'':>12}{d['cache_load_s']:>12.3f}",
        f"{'train, images/s (median)':<40}{tr['reference']['median']:>12.1f}"
        f"{tr['project']['median']:>12.1f}{tr['ratio']:>7.2f}x",
        f"{'eval, images/s (median)':<40}{ev['reference']['median']:>12.1f}"
        f"{ev['project']['median']:>12.1f}{ev['ratio']:>7.2f}x",
    ]
    if result.get("backends"):
        b = result["backends"]
        lines.append(
            f"{'train on JAX vs TensorFlow, images/s':<40}{b['tensorflow']['median']:>12.1f}"
            f"{b['jax']['median']:>12.1f}{b['ratio']:>7.2f}x"
        )
    if result.get("allocator"):
        a = result["allocator"]
        lines.append(
            f"{'train, malloc vs pooled memory, img/s':<40}{a['malloc']['median']:>12.1f}"
            f"{a['pooled']['median']:>12.1f}{a['ratio']:>7.2f}x"
        )
    if "overhead" in result:
        o = result["overhead"]
        lines += [
            f"{'smoke trial: wall / train+eval (s)':<40}{'':>12}"
            f"{o['wall_s']:>7.1f} / {o['fit_s'] + o['eval_s']:.1f}",
            f"{'orchestrator overhead (s)':<40}{'':>12}{o['overhead_s']:>12.2f}",
            f"{'  % of the smoke trial':<40}{'':>12}{o['pct_of_smoke_trial']:>11.1f}%",
            f"{'  % of a quick trial (estimated)':<40}{'':>12}{o['pct_of_quick_trial']:>11.2f}%",
        ]
    # One line per comparison in a fixed form for scripts: ratio <measure> <a>/<b> <value>.
    for part in ("train", "eval", "backends", "allocator"):
        if result.get(part):
            lines.append(f"ratio {part} {result[part]['ratio_of']} {result[part]['ratio']:.3f}")
    if "written_to" in result:
        lines.append(f"written to {result['written_to']}")
    return "\n".join(lines)
