"""The ``sweep`` command: create or resume a study, run its workers, show it live.

``--jobs 1`` runs the trials in this process with all the cores; ``--jobs N`` starts N
worker processes (the same ``fer_sweep worker`` a remote machine would run), each with an
equal share of the cores, and watches the study until they are done.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace

from optuna.trial import FrozenTrial, TrialState

from fer_sweep.errors import Fault, StoppedOnRequest
from fer_sweep.lifecycle._decisions import wants_more
from fer_sweep.lifecycle._settle import settle_all
from fer_sweep.lifecycle._study import (
    OUTCOME,
    REASON,
    create_or_resume,
    plan_of,
    skipped,
    summarize,
)
from fer_sweep.redact import redact
from fer_sweep.search import SweepSpec
from fer_sweep.settings import Settings


def run_sweep(
    spec: SweepSpec,
    settings: Settings,
    *,
    budget: str | None = None,
    jobs: int = 1,
    n_trials: int | None = None,
    timeout: float | None = None,
    data: str | None = None,
    live: bool = True,
    total_images: int | None = None,
    measure: Callable | None = None,
    seeds: int | None = None,
) -> dict[str, int]:
    """Run the study of ``spec`` to its ``n_trials``; returns the count of trials per state.

    It prints first the budget, the trials left and a forecast of their wall time
    (:mod:`._forecast`, over ``total_images`` training images, default the data's;
    ``measure`` measures a pace that is not cached, None: the forecast stays unknown), and
    last that forecast beside the time the run took.

    ``timeout`` (else the file's) bounds this invocation: no trial starts after it; ``seeds``
    (else the budget's, else the file's) is each configuration's number of seeds. Raises
    :class:`~fer_sweep.errors.StoppedOnRequest` after a Ctrl-C (exit 130) and
    :class:`~fer_sweep.errors.Fault` when attempts ran and none completed (exit 1), both
    after the summary line.
    """
    from fer_sweep.lifecycle._attempt import open_worker, settle_study_run
    from fer_sweep.lifecycle._forecast import summary_line, sweep_forecast, sweep_work
    from fer_sweep.lifecycle._processes import graceful_interrupt, spawn_workers, wait_for_workers
    from fer_sweep.lifecycle._progress import StudyView, epoch_end_message
    from fer_sweep.lifecycle._study import space_points
    from fer_sweep.search import make_plan
    from fer_sweep.tracking import connect, describe_study, study_run

    client = connect(settings.tracking_uri)
    study = create_or_resume(
        spec, settings, budget=budget, n_trials=n_trials, timeout=timeout, seeds=seeds
    )
    plan = plan_of(study)
    # Undecided attempts and configurations that failed in an earlier run are queued here,
    # once, before any worker starts.
    settle_all(study, settings.max_retries)
    if total_images is None:
        from fer_sweep.data import load_dataset

        total_images = int((load_dataset(data, cache_dir=settings.cache_dir).split == 0).sum())
    # The study's own total (a --n-trials of an earlier run included), not the file's.
    whole = replace(make_plan(plan.spec, plan.budget_name), n_trials=plan.n_trials)
    predicted, line = sweep_forecast(
        whole,
        study.get_trials(deepcopy=False),
        settings.cache_dir,
        total_images=total_images,
        jobs=jobs,
        chosen=budget is not None,
        measure=measure,
        seeds=plan.seeds,
    )
    print(line, flush=True)
    started_at = time.monotonic()
    parent = study_run(client, study, settings.artifact_root)
    describe_study(client, plan.spec, plan.budget_name, parent)
    limit = timeout if timeout is not None else plan.timeout
    epochs = plan.spec.budget(plan.budget_name).epochs or plan.spec.base.get("epochs", 80)
    where = redact(f"storage {settings.storage}, MLflow {client.tracking_uri}")
    print(f"study {study.study_name}: {where}", file=sys.stderr)
    ended_before = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    interrupted = False

    def epochs_left(trials) -> int:
        return sum(
            w.epochs for w in sweep_work(whole, trials, total_images=total_images, seeds=plan.seeds)
        )

    view = (
        StudyView(
            study,
            n_trials=plan.n_trials,
            epochs=epochs,
            jobs=jobs,
            epochs_left=epochs_left,
            forecast_seconds=predicted.seconds,
        )
        if live
        else None
    )
    # Where the live view draws on a terminal it shows the epochs; elsewhere (a log file,
    # nohup) each epoch of each trial is a line as soon as it ends.
    lines = not (view is not None and view.live.console.is_terminal)
    try:
        with view or nullcontext():
            if jobs == 1:
                stop = threading.Event()
                worker = open_worker(
                    study.study_name,
                    settings,
                    data=data,
                    stop_event=stop,
                    timeout=limit,
                    epoch_lines=lines,
                )
                with graceful_interrupt(stop, lambda: epoch_end_message(study.get_trials())):
                    worker.run()
                interrupted = stop.is_set()
            else:
                procs = spawn_workers(study.study_name, jobs, settings, data=data, timeout=limit)
                interrupted = wait_for_workers(
                    procs, settings.logs_dir, lambda: epoch_end_message(study.get_trials())
                )
    finally:
        # The workers settled it as they left; here the study's run gets the final word.
        points = space_points(plan.spec)
        done = not wants_more(
            study.get_trials(deepcopy=False), plan.n_trials, None if points is None else len(points)
        )
        settle_study_run(client, parent, study, done=done)
    counts = summarize(study)
    print(
        f"study {study.study_name}: {counts['configurations']} configuration(s) of "
        f"{plan.n_trials or 'unlimited'}: {counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['fail']} failed attempt(s), {counts['skipped']} skipped, "
        f"{counts['waiting']} queued"
    )
    took = summary_line(predicted.seconds, time.monotonic() - started_at)
    print(f"study {study.study_name}: {took}")
    if interrupted:
        raise StoppedOnRequest(
            f"study {study.study_name} stopped on request; the same command resumes it"
        )
    failed = failures_of_this_run(study.get_trials(deepcopy=False), ended_before)
    if failed:
        raise Fault(
            f"study {study.study_name}: no attempt completed in this run: " + "; ".join(failed)
        )
    return counts


def failures_of_this_run(trials: Sequence[FrozenTrial], ended_before: set[int]) -> list[str]:
    """Why each attempt that ended in this run failed, when none of them completed (or was
    pruned, a result too); empty when one did, or when nothing ran (a finished study)."""
    ended = [
        t
        for t in trials
        if t.state.is_finished() and t.number not in ended_before and not skipped(t)
    ]
    if not ended or any(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ended):
        return []
    return [
        f"trial {t.number} {t.user_attrs.get(OUTCOME, 'lost')}: "
        f"{t.user_attrs.get(REASON) or 'no reason recorded'}"
        for t in ended
    ]
