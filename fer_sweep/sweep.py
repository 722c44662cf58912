"""The ``sweep`` command: create or resume a study, run its workers, show it live.

``--jobs 1`` runs the trials in this process with all the cores; ``--jobs N`` starts N
worker processes (the same ``fer_sweep worker`` a remote machine would run), each with an
equal share of the cores, and watches the study until they are done.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import nullcontext

from fer_sweep.space import SweepSpec
from fer_sweep.study import (
    Worker,
    create_or_resume,
    graceful_interrupt,
    parent_run,
    plan_of,
    spawn_workers,
    storage_url,
    summarize,
)
from fer_sweep.tracking import connect, store_dir


def run_sweep(
    spec: SweepSpec,
    *,
    budget: str | None = None,
    jobs: int = 1,
    n_trials: int | None = None,
    timeout: float | None = None,
    data: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    live: bool = True,
) -> dict[str, int]:
    """Run the study of ``spec`` to its target; returns the count of trials per state."""
    from fer_sweep.progress import StudyView

    client = connect(tracking_uri)
    study = create_or_resume(spec, budget=budget, storage=storage, n_trials=n_trials,
                             timeout=timeout)  # fmt: skip
    parent = parent_run(study, client)
    client.set_terminated(parent, "RUNNING")  # a resumed sweep reopens its parent run
    plan = plan_of(study)
    epochs = plan.spec.budget(plan.budget_name).epochs or plan.spec.base.get("epochs", 80)
    print(f"study {study.study_name}: storage {storage_url(storage)}, MLflow {client.tracking_uri}",
          file=sys.stderr)  # fmt: skip
    view = StudyView(study, n_trials=plan.n_trials, epochs=epochs, jobs=jobs) if live else None
    status = "FINISHED"
    try:
        with view or nullcontext():
            if jobs == 1:
                stop = threading.Event()
                w = Worker(study.study_name, storage=storage, tracking_uri=tracking_uri,
                           data=data, stop_event=stop)  # fmt: skip
                with graceful_interrupt(stop):
                    w.run()
                if stop.is_set():
                    status = "KILLED"
            else:
                status = _run_processes(study.study_name, jobs, storage_url(storage),
                                        tracking_uri, data)  # fmt: skip
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        counts = summarize(study)
        _finish_parent(client, parent, study, status)
    print(
        f"study {study.study_name}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed, {counts['waiting']} queued"
    )
    return counts


def _run_processes(name: str, jobs: int, storage: str, tracking_uri, data) -> str:
    procs = spawn_workers(name, jobs, storage=storage, tracking_uri=tracking_uri, data=data,
                          log_dir=store_dir() / "logs")  # fmt: skip
    interrupted = False

    # The terminal's Ctrl-C reaches the workers too (same process group); they stop after
    # their epoch. Here the first one only waits for them, the second passes on.
    def handler(signum, frame):
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        codes = [p.wait() for p in procs]
    finally:
        signal.signal(signal.SIGINT, previous)
    bad = [c for c in codes if c not in (0, 130)]
    if bad:
        print(f"{len(bad)} worker(s) exited with errors; see {store_dir() / 'logs'}",
              file=sys.stderr)  # fmt: skip
    return "KILLED" if interrupted else "FINISHED"


def _finish_parent(client, parent: str, study, status: str) -> None:
    try:
        complete = [t for t in study.get_trials(deepcopy=False) if t.value is not None
                    and t.state.name == "COMPLETE"]  # fmt: skip
        if complete:
            best = max(complete, key=lambda t: t.value)
            client.log_metric(parent, "best_val_accuracy", best.value)
            private = best.user_attrs.get("private_accuracy")
            if private is not None:
                client.log_metric(parent, "best_trial_test_accuracy", private)
            client.set_tag(parent, "best_trial", str(best.number))
        for state, n in summarize(study).items():
            client.log_metric(parent, f"trials_{state}", n)
        client.set_terminated(parent, status)
    except Exception as err:  # noqa: BLE001 - the trials are safe in Optuna; say what's missing
        print(f"warning: could not update the study's MLflow run: {err}", file=sys.stderr)
