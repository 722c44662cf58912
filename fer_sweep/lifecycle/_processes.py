"""Worker processes on one machine, CPU threads, and what Ctrl-C does.

``sweep --jobs N`` starts N ``fer_sweep worker`` processes (the same command a remote machine
runs), each with an equal share of the cores (and on JAX of the GPU's memory), and waits for
them. Ctrl-C: the first one lets the running epoch finish, checkpoints and stops; the second
stops at once (exit 130).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fer_sweep.settings import Settings


def stop_message(epoch_end: Callable[[], str | None] | None = None) -> str:
    """What the first Ctrl-C prints: when the stop happens (``epoch_end``: when the running
    epoch ends, in words, or None when nothing says), and what the next run does."""
    when = None
    if epoch_end is not None:
        try:
            when = epoch_end()
        except Exception:  # noqa: BLE001 - a busy storage: the message without the time
            when = None
    head = (
        f"stopping after the current epoch: {when}"
        if when
        else ("stopping after the current epoch")
    )
    return (
        f"\n{head}; it is checkpointed and the next run resumes it first; Ctrl-C again to quit now"
    )


@contextmanager
def graceful_interrupt(
    stop_event: threading.Event, epoch_end: Callable[[], str | None] | None = None
) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM): set ``stop_event``, so the run finishes its epoch,
    checkpoints and stops, and say when that will be (``epoch_end``, see
    :func:`stop_message`). Second: ``KeyboardInterrupt`` at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.set()
        print(stop_message(epoch_end), file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def spawn_workers(
    study_name: str,
    jobs: int,
    settings: Settings,
    *,
    data: str | None,
    timeout: float | None,
) -> list[subprocess.Popen]:
    """Start ``jobs`` worker processes, each with its share of the cores and these settings;
    their output goes to ``settings.logs_dir``."""
    log_dir = settings.logs_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = worker_environ(settings, jobs)
    procs = []
    for i in range(jobs):
        cmd = [
            sys.executable,
            "-m",
            "fer_sweep",
            "worker",
            "--study",
            study_name,
            "--threads",
            str(threads),
        ]
        if data:
            cmd += ["--data", str(data)]
        if timeout is not None:
            cmd += ["--timeout", str(timeout)]
        log = open(log_dir / f"{study_name}-worker{i}.log", "ab")  # noqa: SIM115 - child owns it
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    return procs


# JAX takes this fraction of the GPU's memory when it starts (its default is 0.75): N
# processes on one GPU each get an N-th of 90 %, the rest left for their N CUDA contexts.
MEM_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION"
GPU_SHARE = 0.9


def worker_environ(
    settings: Settings, jobs: int, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of each of ``jobs`` worker processes on this machine: ``environ``
    (``os.environ``) with these settings and, on the JAX backend, an equal share of the GPU
    memory for each (unless ``XLA_PYTHON_CLIENT_MEM_FRACTION`` is set already)."""
    from fer_sweep.backend import name

    env = {**(os.environ if environ is None else environ), **settings.environ()}
    if name() == "jax" and jobs > 1 and not env.get(MEM_FRACTION):
        env[MEM_FRACTION] = f"{GPU_SHARE / jobs:.3f}"
    return env


def wait_for_workers(
    procs: list[subprocess.Popen],
    log_dir: Path,
    epoch_end: Callable[[], str | None] | None = None,
) -> bool:
    """Wait for the worker processes; returns whether Ctrl-C was pressed meanwhile.

    The terminal's Ctrl-C reaches the workers too (same process group) and they stop after
    their epoch; here the first one says when that will be and waits for them, the second
    raises KeyboardInterrupt.
    """
    interrupted = False

    def handler(signum, frame):
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True
        print(stop_message(epoch_end), file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        codes = [p.wait() for p in procs]
    finally:
        signal.signal(signal.SIGINT, previous)
    bad = [c for c in codes if c not in (0, 130)]
    if bad:
        print(f"{len(bad)} worker(s) exited with errors; see {log_dir}", file=sys.stderr)
    return interrupted


def set_threads(threads: int | None) -> None:
    """Limit the backend's CPU threads (must run before the first op)."""
    if not threads:
        return
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
