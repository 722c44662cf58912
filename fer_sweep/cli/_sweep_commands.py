"""Commands about sweep files, studies and their workers: ``schema``, ``sweep``, ``worker``,
``study create``, and ``ui``, MLflow's UI on the local store.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fer_sweep.cli._options import (
    DataOpt,
    RetriesOpt,
    SeedsOpt,
    StorageOpt,
    TrackingOpt,
    pace_measure,
    settings_of,
)
from fer_sweep.errors import StoppedOnRequest, UserError
from fer_sweep.tracking import DEFAULT_WORKERS as UI_WORKERS


def schema() -> None:
    """Print the JSON Schema of a sweep file (sweeps/sweep.schema.json, for editors)."""
    from fer_sweep.search import schema_text

    print(schema_text(), end="")


def sweep(
    name: Annotated[str, typer.Argument(help="a file in sweeps/ (name without .yaml) or a path")],
    budget: Annotated[
        str | None, typer.Option(help="smoke | quick | thesis | a file's own")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="trials at once on this machine")] = 1,
    n_trials: Annotated[
        int | None,
        typer.Option(min=1, help="the study's total of configurations (default: the file's)"),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="this run starts no trial after SECONDS")
    ] = None,
    seeds: SeedsOpt = None,
    data: DataOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    max_retries: RetriesOpt = None,
    live: Annotated[bool, typer.Option(help="live view of the study in the terminal")] = True,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan", help="print each trial's full config at the budget; train and write nothing"
        ),
    ] = False,
) -> None:
    """Run (or resume) the study of a sweep file: finished trials are kept, missing ones run."""
    from fer_sweep.search import load_sweep

    settings = settings_of(storage=storage, tracking_uri=tracking_uri, max_retries=max_retries)
    spec = load_sweep(name)
    spec.budget(budget)  # an unknown budget is refused before anything is loaded or written
    measure = pace_measure(settings)
    if plan:  # before the imports below, which load TensorFlow (unless a pace is measured)
        from fer_sweep.lifecycle import FER2013_TRAINING_IMAGES, sweep_forecast
        from fer_sweep.search import make_plan, render_plan

        made = make_plan(spec, budget)
        # A dry run writes no study: the forecast is of the whole plan, on FER-2013's size.
        _, line = sweep_forecast(
            made,
            (),
            settings.cache_dir,
            total_images=FER2013_TRAINING_IMAGES,
            jobs=jobs,
            chosen=budget is not None,
            measure=measure,
            seeds=spec.seeds_at(budget, seeds),
        )
        print(f"# {line}")
        print(render_plan(made), end="")
        return

    from fer_sweep.data import load_dataset, require_splits, resolve_data_path
    from fer_sweep.lifecycle import run_sweep

    data_path = resolve_data_path(data)
    # Parse and cache once here, before workers race to do it, and refuse data that cannot
    # train before any store is written.
    dataset = require_splits(load_dataset(data_path, cache_dir=settings.cache_dir))
    run_sweep(
        spec,
        settings,
        budget=budget,
        jobs=jobs,
        n_trials=n_trials,
        timeout=timeout,
        data=str(data_path),
        live=live,
        total_images=int((dataset.split == 0).sum()),
        measure=measure,
        seeds=seeds,
    )


def worker(
    study: Annotated[str, typer.Option(help="name of an existing study")],
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    data: DataOpt = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for this worker")] = None,
    max_trials: Annotated[int | None, typer.Option(help="leave after this many trials")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="start no trial after SECONDS (default: the sweep file's timeout)"),
    ] = None,
    max_retries: RetriesOpt = None,
) -> None:
    """Join a running study (from any machine that reaches its storage) and run its trials."""
    settings = settings_of(storage=storage, tracking_uri=tracking_uri, max_retries=max_retries)
    from fer_sweep.lifecycle import set_threads

    set_threads(threads)
    import threading

    from fer_sweep.lifecycle import graceful_interrupt, open_worker

    stop = threading.Event()
    w = open_worker(
        study,
        settings,
        data=None if data is None else str(data),
        stop_event=stop,
        max_trials=max_trials,
        timeout=timeout,
    )
    from fer_sweep.lifecycle import epoch_end_message

    with graceful_interrupt(stop, lambda: epoch_end_message(w.study.get_trials())):
        ran = w.run()
    print(f"worker ran {ran} trial(s) of '{study}'")
    if stop.is_set():
        raise StoppedOnRequest(
            f"worker stopped on request; 'fer_sweep worker --study {study}' or the sweep resumes it"
        )


def study_create(
    name: Annotated[str, typer.Argument(help="a file in sweeps/ (name without .yaml) or a path")],
    budget: Annotated[
        str | None, typer.Option(help="smoke | quick | thesis | a file's own")
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option(min=1, help="the study's total of configurations (default: the file's)"),
    ] = None,
    seeds: SeedsOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    max_retries: RetriesOpt = None,
) -> None:
    """Create (or update) a study and its MLflow parent run without running any trial."""
    from fer_sweep.search import load_sweep

    settings = settings_of(storage=storage, tracking_uri=tracking_uri, max_retries=max_retries)
    spec = load_sweep(name)
    spec.budget(budget)  # an unknown budget is refused before anything is loaded or written

    from fer_sweep.lifecycle import create_or_resume, plan_of, settle_all
    from fer_sweep.tracking import connect, describe_study, study_run

    client = connect(settings.tracking_uri)
    study = create_or_resume(spec, settings, budget=budget, n_trials=n_trials, seeds=seeds)
    settle_all(study, settings.max_retries)
    plan = plan_of(study)
    describe_study(
        client, plan.spec, plan.budget_name, study_run(client, study, settings.artifact_root)
    )
    print(study.study_name)


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="port on 127.0.0.1")] = 5000,
    workers: Annotated[
        int, typer.Option(min=1, help="uvicorn worker processes (MLflow's own default is 4)")
    ] = UI_WORKERS,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="open a browser once the UI answers")
    ] = True,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Open the MLflow UI on the local store (127.0.0.1); Ctrl-C or SIGTERM stops all of it."""
    from fer_sweep.tracking import (
        RUNS_FRAGMENT,
        app_registered,
        can_open_browser,
        connect,
        landing_url,
        mlflow_command,
        serve,
        server_env,
        studies,
        study_url,
    )

    settings = settings_of(tracking_uri=tracking_uri)
    uri = settings.tracking_uri
    if not settings.tracks_locally:
        link = uri.rstrip("/") + "/" + RUNS_FRAGMENT
        raise UserError(f"{uri} is an MLflow server with its own UI: open {link}")
    client = connect(uri)
    root = settings.artifacts_dir.as_uri() if uri.startswith("sqlite:") else None
    url = landing_url(port)
    # Through fer_sweep's page (fer_sweep/tracking/_ui_app.py): from the list, a click on a study
    # opens its runs with its saved view, in a browser that has never seen MLflow too.
    links = [(name, study_url(port, exp_id)) for name, exp_id in studies(client)]
    print(f"MLflow UI for {uri}, starting ({workers} worker(s)); Ctrl-C stops it", file=sys.stderr)

    def ready(seconds: float) -> None:
        print(f"MLflow UI ready after {seconds:.0f} s: {url}", flush=True)
        for name, link in links:
            print(f"  {name}: {link}", flush=True)
        if open_browser and can_open_browser():
            import webbrowser

            # One study: straight to its trials; several: the list of experiments.
            webbrowser.open(links[0][1] if len(links) == 1 else url)

    with app_registered(server_env()) as env:
        code = serve(mlflow_command(uri, port, workers, root), port=port, env=env, on_ready=ready)
    if code >= 128:  # stopped on request (Ctrl-C, SIGTERM): the whole group is gone
        print("MLflow UI stopped", file=sys.stderr)
        code = 0
    raise typer.Exit(code)
