"""One-off A/B of memory allocators for the trainer (the reason for ``pool_tensorflow_memory``).

Each variant trains in a fresh process (the allocator is chosen when TensorFlow starts), as
the benchmark builds the trainer, and variants alternate round by round; prints images/s and
the kernel's share of CPU time per variant. ``make bench`` keeps the pooled-vs-malloc row;
this script also tries glibc's own knobs. The variants' environments must not be overridden
by the caller's, so run it with ``TF_CPU_ALLOCATOR_USE_BFC`` unset:

    .venv/bin/python benchmarks/allocator_ab.py parent ROUNDS STEPS [DATA]
"""

import json
import os
import statistics
import subprocess
import sys
import time

DATA = "../shared/data/fer2013.csv.gz"
VARIANTS = {
    "malloc": {"TF_CPU_ALLOCATOR_USE_BFC": "false"},
    "tf_bfc": {"TF_CPU_ALLOCATOR_USE_BFC": "true"},
    "glibc_keep": {
        "TF_CPU_ALLOCATOR_USE_BFC": "false",
        "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=4294967296:"
        "glibc.malloc.mmap_threshold=33554432",
    },
}


def child(steps: int, data: str) -> None:
    from benchmarks.bench import PRESET, _steps_per_epoch, _tile
    from fer_sweep.config import load_config
    from fer_sweep.data import load_dataset
    from fer_sweep.training import project_fitter

    dataset = load_dataset(data)
    config = load_config(preset=PRESET)
    x, y = _tile(*dataset.arrays("Training"), 64 * 64)
    fit, _ = project_fitter(config, x, y, steps_per_epoch=_steps_per_epoch(dataset, config))
    fit(8, 2)  # tracing and warm-up
    before, start = os.times(), time.time()
    rate = fit(steps, 2)
    after, wall = os.times(), time.time() - start
    print(
        json.dumps(
            {
                "rate": rate,
                "user": (after.user - before.user) / wall,
                "sys": (after.system - before.system) / wall,
            }
        )
    )


def parent(rounds: int, steps: int, data: str) -> None:
    seen = {name: [] for name in VARIANTS}
    for r in range(rounds):
        for name, env in VARIANTS.items():
            cmd = [sys.executable, __file__, "child", str(steps), data]
            out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if not lines:
                sys.exit(f"{name}: the child failed\n{out.stderr[-2000:]}")
            seen[name].append(json.loads(lines[-1]))
            print(r, name, seen[name][-1], flush=True)
    base = statistics.median(d["rate"] for d in seen["malloc"])
    for name, runs in seen.items():
        rate = statistics.median(d["rate"] for d in runs)
        kernel = statistics.median(d["sys"] for d in runs)
        print(
            f"{name}: median {rate:.1f} images/s, {rate / base:.2f}x malloc, "
            f"kernel {kernel:.2f} cores"
        )


if __name__ == "__main__":
    if sys.argv[1] == "child":
        child(int(sys.argv[2]), sys.argv[3])
    else:
        parent(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else DATA)
