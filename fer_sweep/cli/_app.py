"""Command line: argument parsing and exit codes, nothing else.

A :class:`~fer_sweep.errors.UserError` becomes one ``error: ...`` line on stderr and exit
code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

from fer_sweep.cli._run import run_app

# TensorFlow's C++ start-up chatter is noise to a user of this CLI; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer  # noqa: E402

from fer_sweep.errors import StoppedOnRequest, UserError  # noqa: E402
from fer_sweep.redact import redact  # noqa: E402
from fer_sweep.tracking import DEFAULT_WORKERS as UI_WORKERS  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna sweeps over the thesis's VGG-style FER-2013 networks, tracked in MLflow.",
)
data_app = typer.Typer(no_args_is_help=True, help="The FER-2013 dataset: check and cache it.")
app.add_typer(data_app, name="data")

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="fer2013.csv, fer2013.csv.gz or an image folder "
        "(default: $FER2013_DATA, then data/fer2013.csv[.gz])",
    ),
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, then sqlite:///mlruns/mlflow.db)",
    ),
]


def _settings(**options):
    """The one Settings object of this command: its options, else the environment.

    On the JAX backend it also points JAX's persistent compilation cache at the settings'
    folder, before anything compiles.
    """
    from fer_sweep.backend import use_compilation_cache
    from fer_sweep.settings import Settings

    settings = Settings.resolve(**options)
    use_compilation_cache(settings.jax_cache)
    return settings


def _pace_measure(settings):
    """How a forecast measures a pace this machine has not cached: a short fit, said on
    stderr while it runs; None where ``$FER_SWEEP_MEASURE_PACE`` is off."""
    if not settings.measure_pace:
        return None

    def measure(config):
        from fer_sweep.lifecycle import measure_pace

        print(
            f"measuring this machine's pace for {config.arch} (a short fit)...",
            file=sys.stderr,
            flush=True,
        )
        return measure_pace(config)

    return measure


@app.command()
def schema() -> None:
    """Print the JSON Schema of a sweep file (sweeps/sweep.schema.json, for editors)."""
    from fer_sweep.search import schema_text

    print(schema_text(), end="")


@app.command()
def models() -> None:
    """Print the A-F architectures: weight layers and trainable parameters beside the thesis."""
    from fer_sweep.config import load_config
    from fer_sweep.model import ARCHITECTURES, build_model, trainable_parameters
    from fer_sweep.thesis import PARAMETER_COUNTS, ROUNDED_COUNTS

    print(
        f"{'type':<5}{'weight layers':>14}{'trainable params':>18}{'thesis':>10}  conv blocks / FCs"
    )
    for name, arch in ARCHITECTURES.items():
        count = trainable_parameters(build_model(load_config(arch=name)))
        mark = "" if count == PARAMETER_COUNTS[name] else "  MISMATCH"
        blocks = " ".join(str(list(b)) for b in arch.blocks)
        print(
            f"{name:<5}{arch.weight_layers:>14}{count:>18,}{ROUNDED_COUNTS[name]:>10}  "
            f"{blocks} / {list(arch.hidden)}{mark}"
        )


@data_app.command("check")
def data_check(data: DataOpt = None) -> None:
    """Read (and cache) the dataset; print rows and class counts per split."""
    from fer_sweep.data import check_report, load_dataset, require_splits

    print(check_report(require_splits(load_dataset(data))))


@data_app.command("synthetic")
def data_synthetic(
    path: Annotated[Path, typer.Argument(help="where to write the CSV (.csv or .csv.gz)")],
    per_split: Annotated[int, typer.Option(min=7, help="rows per split")] = 300,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write a small synthetic dataset in the FER-2013 schema (to try the tools without it)."""
    from fer_sweep.data import write_synthetic_csv

    print(write_synthetic_csv(path, per_split=per_split, seed=seed))


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file of config keys")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help="thesis-top1 | thesis-top2 | thesis-top3")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="key=value override (repeatable)")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="override the number of epochs")] = None,
    subset: Annotated[int | None, typer.Option(help="images per split (stratified)")] = None,
    data: DataOpt = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "fer-sweep-train",
    resume: Annotated[
        str | None, typer.Option(help="MLflow run id of an interrupted run to continue")
    ] = None,
    tracking_uri: TrackingOpt = None,
    progress: Annotated[bool, typer.Option(help="show the progress bar")] = True,
) -> None:
    """Train one model as Section 5.2 describes, tracked as one MLflow run."""
    import threading

    from fer_sweep.config import load_config

    if not resume:  # a bad config is refused before TensorFlow and MLflow load
        cfg = load_config(
            path=config, preset=preset, overrides=set_ or (), epochs=epochs, subset=subset
        )

    from fer_sweep.data import load_dataset, require_splits
    from fer_sweep.errors import TrainingInterrupted
    from fer_sweep.lifecycle import graceful_interrupt
    from fer_sweep.tracking import config_from_run, connect, open_run, source_tags, tracked_train

    settings = _settings(tracking_uri=tracking_uri)
    if not resume:  # data that cannot train is refused before the store is touched
        dataset = require_splits(load_dataset(data, cache_dir=settings.cache_dir))
    client = connect(settings.tracking_uri)
    if resume:
        try:
            earlier = client.get_run(resume)
        except Exception:  # noqa: BLE001 - MLflow raises its own types for a bad id
            raise UserError(f"--resume {resume}: no such MLflow run") from None
        refuse_resume(earlier)
        cfg = config_from_run(client, resume)
        dataset = require_splits(load_dataset(data, cache_dir=settings.cache_dir))
    command = " ".join(
        [
            "fer_sweep train",
            *(["--preset", preset] if preset else []),
            *(["--config", str(config)] if config else []),
        ]
    )
    stop = threading.Event()
    try:
        with (
            graceful_interrupt(stop),
            open_run(
                client,
                experiment=experiment,
                config=None if resume else cfg,
                run_name=preset or (config and config.stem),
                reopen=resume,
                artifact_root=settings.artifact_root,
                tags=None if resume else source_tags(command),
            ) as run,
        ):
            print(f"MLflow run {run.id} ({redact(client.tracking_uri)})", file=sys.stderr)
            result = tracked_train(
                cfg,
                dataset,
                run=run,
                workdir=settings.workdir(f"train/{run.id}"),
                progress=progress,
                stop_event=stop,
            )
    except TrainingInterrupted as stopped:
        print(f"{stopped}; continue with: fer_sweep train --resume {run.id}", file=sys.stderr)
        raise typer.Exit(130) from None
    run_id = run.id
    print(
        f"epochs {result.epochs_trained}  best PublicTest {result.best_val_accuracy:.4f} "
        f"(epoch {result.best_epoch})  PrivateTest final {result.test_final.accuracy:.4f}  "
        f"at best epoch {result.test_best.accuracy:.4f}  run {run_id}"
    )


def refuse_resume(run) -> None:
    """Refuse to continue a run that ``train --resume`` must never write again: a finished
    one (its model, metrics and dataset are its result), a sweep trial's or a study's (the
    sweep resumes those, and Optuna must agree with MLflow about them)."""
    tags, rid = run.data.tags, run.info.run_id
    if "optuna.trial" in tags or tags.get("fer_sweep.role") == "study":
        study = tags.get("optuna.study", "?")
        what = f"trial {tags['optuna.trial']}" if "optuna.trial" in tags else "the study run"
        raise UserError(
            f"--resume {rid}: it is {what} of study '{study}'; a sweep's runs are "
            f"resumed by the sweep (fer_sweep worker --study {study})"
        )
    if run.info.status == "FINISHED":
        raise UserError(
            f"--resume {rid}: the run is finished, and a finished run is "
            "never written again; train a new run with the same --preset or "
            "--config"
        )


RetriesOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="retries of a configuration whose attempt failed "
        "(default: $FER_SWEEP_MAX_RETRIES, then 1)",
    ),
]
SeedsOpt = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="seeds per configuration, its objective their mean "
        "(default: the budget's, then the file's, then 1)",
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna storage URL (default: $FER_SWEEP_STORAGE, then sqlite:///mlruns/optuna.db)",
    ),
]


@app.command()
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

    settings = _settings(storage=storage, tracking_uri=tracking_uri, max_retries=max_retries)
    spec = load_sweep(name)
    spec.budget(budget)  # an unknown budget is refused before anything is loaded or written
    measure = _pace_measure(settings)
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


@app.command()
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
    settings = _settings(storage=storage, tracking_uri=tracking_uri, max_retries=max_retries)
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


study_app = typer.Typer(no_args_is_help=True, help="Create studies for workers to join.")
app.add_typer(study_app, name="study")


@study_app.command("create")
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

    settings = _settings(storage=storage, tracking_uri=tracking_uri, max_retries=max_retries)
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


@app.command()
def best(
    top: Annotated[
        int,
        typer.Option(min=1, help="how many trials: of --study, else of all studies per budget"),
    ] = 3,
    study: Annotated[str | None, typer.Option(help="one study (default: all)")] = None,
    format: Annotated[str, typer.Option(help="table | markdown | csv | json")] = "table",
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble",
            help="also evaluate the top trials' mean softmax on "
            "PrivateTest once and record it in MLflow (needs --study and --data)",
        ),
    ] = False,
    tta: Annotated[
        bool, typer.Option("--tta", help="with --ensemble: average each image with its mirror")
    ] = False,
    data: DataOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Rank finished trials by PublicTest accuracy, beside the thesis's top 3."""
    from fer_sweep.lifecycle import open_storage
    from fer_sweep.reporting import rank_trials, render

    if format not in ("table", "markdown", "csv", "json"):
        raise UserError(f"--format {format}: unknown format (known: table, markdown, csv, json)")
    if tta and not ensemble:
        raise UserError("--tta applies to --ensemble; add --ensemble")
    if ensemble and study is None:
        raise UserError("--ensemble needs --study: an ensemble is of one study's trials")
    settings = _settings(storage=storage, tracking_uri=tracking_uri)
    rdb = open_storage(settings)
    ranking = rank_trials(rdb, study=study, top=top)
    print(render(ranking, format))
    if ensemble:
        import optuna

        from fer_sweep.data import load_dataset
        from fer_sweep.reporting import evaluate_top_trials
        from fer_sweep.tracking import connect

        client = connect(settings.tracking_uri)
        dataset = load_dataset(data, cache_dir=settings.cache_dir)
        loaded = optuna.load_study(study_name=study, storage=rdb)
        result = evaluate_top_trials(
            client,
            loaded,
            ranking.groups[0].rows,
            dataset,
            tta=tta,
            artifact_root=settings.artifact_root,
        )
        print(result.describe())


@app.command()
def report(
    study: Annotated[str, typer.Argument(help="the study (e.g. dropout-smoke)")],
    format: Annotated[str, typer.Option(help="markdown | json")] = "markdown",
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Each configuration's accuracy with its 95 % interval, and paired tests between them on
    the same test images (Holm-adjusted), logged to the study's MLflow run."""
    if format not in ("markdown", "json"):
        raise UserError(f"--format {format}: unknown format (known: markdown, json)")
    import optuna

    from fer_sweep.lifecycle import open_storage
    from fer_sweep.reporting import (
        REPORT_DIR,
        build_study_report,
        finished_trials,
        log_study_report,
    )

    settings = _settings(storage=storage, tracking_uri=tracking_uri)
    rdb = open_storage(settings)
    finished = finished_trials(rdb, study)  # before MLflow and Keras load

    from fer_sweep.tracking import connect

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per trial
    client = connect(settings.tracking_uri)
    built = build_study_report(client, finished, study)
    run_id = log_study_report(client, optuna.load_study(study_name=study, storage=rdb), built)
    print(built.to_json() if format == "json" else built.to_markdown())
    print(f"logged to MLflow run {run_id} ({REPORT_DIR}/)", file=sys.stderr)


@app.command("claims")
def claims_command(
    out: Annotated[Path, typer.Option(help="folder of the reproduction and the file")] = Path(
        "results"
    ),
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Write OUT/thesis-claims.md: each thesis conclusion a shipped sweep tests, its verdict
    from the thesis-budget study, or the time it would take to run here."""
    import optuna

    from fer_sweep.lifecycle import open_storage
    from fer_sweep.reporting import (
        CLAIMS,
        CLAIMS_FILE,
        build_study_report,
        claims_markdown,
        finished_trials,
        reproduction_rows,
        top3_verdict,
    )

    settings = _settings(storage=storage, tracking_uri=tracking_uri)
    rdb = open_storage(settings)
    known = {s.study_name for s in optuna.get_all_study_summaries(rdb)}
    verdicts, client = {}, None
    for claim in CLAIMS:
        name = f"{claim.sweep}-thesis"
        if name not in known:
            continue
        try:
            finished = finished_trials(rdb, name)
        except UserError:  # created, nothing finished yet: not run
            continue
        if client is None:
            from fer_sweep.tracking import connect

            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            client = connect(settings.tracking_uri)
        built = build_study_report(client, finished, name)
        verdicts[claim.section] = next(v for v in built.verdicts if v.claim == claim)
    top1 = [r for r in reproduction_rows(out) if r.recipe == "thesis-top1" and r.pace]
    pace = top1[0].pace if top1 else None
    source = (
        f"at thesis-top1 seed {top1[0].seed}'s measured {pace:.0f} s an epoch: Type C, "
        "batch 64, on this machine's CPU; other architectures and batch sizes differ"
        if pace
        else ""
    )
    text = claims_markdown(
        verdicts, seconds_per_epoch=pace, pace_source=source, top3=top3_verdict(out)
    )
    path = out / CLAIMS_FILE
    path.write_text(text)
    print(path)


@app.command()
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

    settings = _settings(tracking_uri=tracking_uri)
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


@app.command()
def reproduce(
    recipe: Annotated[
        list[str] | None, typer.Option(help="thesis-top1 | thesis-top2 | thesis-top3 (repeat)")
    ] = None,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1,2",
    out: Annotated[Path, typer.Option(help="folder of the runs and the report")] = Path("results"),
    epochs: Annotated[
        int | None, typer.Option(help="shorter runs than the thesis's (not comparable)")
    ] = None,
    data: DataOpt = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="only rewrite the report from the runs")
    ] = False,
) -> None:
    """Train the thesis's top 3 at full length over seeds, resumably, and write the report."""
    import threading

    from fer_sweep.reporting import RECIPES, run_all, write_report

    chosen = tuple(recipe or RECIPES)
    for r in chosen:
        if r not in RECIPES:
            raise UserError(f"--recipe {r}: unknown (known: {', '.join(RECIPES)})")
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise UserError(f"--seeds {seeds!r}: expected comma-separated whole numbers") from None
    if not seed_list or min(seed_list) < 0:
        raise UserError(f"--seeds {seeds!r}: expected at least one seed >= 0")
    from fer_sweep.data import load_dataset, require_splits
    from fer_sweep.errors import TrainingInterrupted
    from fer_sweep.lifecycle import graceful_interrupt

    settings = _settings()
    dataset = load_dataset(data, cache_dir=settings.cache_dir)
    if not report_only:
        require_splits(dataset)  # before the first run's folder is made
    out.mkdir(parents=True, exist_ok=True)
    if not report_only:
        from fer_sweep.backend import name as backend_name
        from fer_sweep.lifecycle import PaceCache, forecast, forecast_line
        from fer_sweep.reporting import work_left

        cache = PaceCache(settings.cache_dir)
        left = work_left(out, dataset, chosen, seed_list, epochs)
        predicted = forecast(left, cache, backend=backend_name(), measure=_pace_measure(settings))
        length = (
            f"{epochs} epochs (chosen: --epochs)"
            if epochs
            else "the thesis's own length (default; --epochs N to shorten)"
        )
        head = f"reproduce {', '.join(chosen)} × seeds {seeds} at {length}"
        print(forecast_line(head, predicted, unit="run"), flush=True)
        stop = threading.Event()
        try:
            with graceful_interrupt(stop):
                run_all(
                    dataset,
                    out=out,
                    recipes=chosen,
                    seeds=seed_list,
                    epochs=epochs,
                    stop_event=stop,
                    pace_cache=cache,
                )
        except TrainingInterrupted as stopped:
            write_report(out, dataset, seeds=seed_list)
            print(f"{stopped}; the same command continues it", file=sys.stderr)
            raise typer.Exit(130) from None
    print(write_report(out, dataset, seeds=seed_list))


predictions_app = typer.Typer(no_args_is_help=True, help="Per-image test predictions of runs.")
app.add_typer(predictions_app, name="predictions")


@predictions_app.command("backfill")
def predictions_backfill(
    folders: Annotated[
        list[Path], typer.Argument(help="finished reproduction runs (results/work/RECIPE-seedN)")
    ],
    data: DataOpt = None,
) -> None:
    """Write predictions.npz (PublicTest and PrivateTest, final and best-epoch weights, plain
    and with flip TTA) for runs that finished before runs wrote it."""
    from fer_sweep.reporting import RESULT_FILE

    for folder in folders:  # every folder checked before the data and the models load
        if not (folder / RESULT_FILE).is_file():
            raise UserError(f"{folder}: no {RESULT_FILE}, so not a finished run's folder")
    from fer_sweep.data import load_dataset
    from fer_sweep.reporting import backfill_predictions

    dataset = load_dataset(data, cache_dir=_settings().cache_dir)
    for folder in folders:
        print(backfill_predictions(folder, dataset))


def main(argv: list[str] | None = None) -> None:
    run_app(app, "fer_sweep", argv)
