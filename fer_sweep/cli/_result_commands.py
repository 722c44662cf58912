"""Commands about results: ``best``, ``report``, ``claims``, ``reproduce``, ``predictions``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from fer_sweep.cli._options import (
    DataOpt,
    StorageOpt,
    TrackingOpt,
    pace_measure,
    settings_of,
)
from fer_sweep.errors import UserError


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
    settings = settings_of(storage=storage, tracking_uri=tracking_uri)
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


def ensemble(
    trial: Annotated[
        list[str] | None,
        typer.Option(help="a finished sweep trial, STUDY:NUMBER (repeat); all its seeds"),
    ] = None,
    run: Annotated[
        list[Path] | None,
        typer.Option(help="a finished reproduction run's folder (repeat), results/work/..."),
    ] = None,
    tta: Annotated[
        str,
        typer.Option(
            help="none | flip (each image with its mirror) | ten-crop (networks trained on "
            "crops over their ten crops, the others with their mirror)"
        ),
    ] = "none",
    experiment: Annotated[
        str, typer.Option(help="the MLflow experiment that records it")
    ] = "ensembles",
    data: DataOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Evaluate any mix of trials and reproduction runs as one ensemble (mean softmax) on
    PrivateTest once, and record it as an MLflow run."""
    from fer_sweep.reporting import TTA_CHOICES, evaluate_ensemble, run_member, trial_members

    how = tta.replace("-", "_")
    if how not in TTA_CHOICES:
        raise UserError(f"--tta {tta}: unknown (known: none, flip, ten-crop)")
    if not trial and not run:
        raise UserError("an ensemble needs members: --trial STUDY:NUMBER and/or --run FOLDER")
    members = [run_member(folder) for folder in run or []]  # folders first: no store needed
    settings = settings_of(storage=storage, tracking_uri=tracking_uri)
    from fer_sweep.data import load_dataset
    from fer_sweep.tracking import connect

    client = connect(settings.tracking_uri)
    if trial:
        from fer_sweep.lifecycle import open_storage

        rdb = open_storage(settings)
        members = [m for ref in trial for m in trial_members(client, rdb, ref)] + members
    dataset = load_dataset(data, cache_dir=settings.cache_dir)
    result = evaluate_ensemble(
        client,
        members,
        dataset,
        tta=how,
        experiment=experiment,
        artifact_root=settings.artifact_root,
    )
    print(result.describe())


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

    settings = settings_of(storage=storage, tracking_uri=tracking_uri)
    rdb = open_storage(settings)
    finished = finished_trials(rdb, study)  # before MLflow and Keras load

    from fer_sweep.tracking import connect

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per trial
    client = connect(settings.tracking_uri)
    built = build_study_report(client, finished, study)
    run_id = log_study_report(client, optuna.load_study(study_name=study, storage=rdb), built)
    print(built.to_json() if format == "json" else built.to_markdown())
    print(f"logged to MLflow run {run_id} ({REPORT_DIR}/)", file=sys.stderr)


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

    settings = settings_of(storage=storage, tracking_uri=tracking_uri)
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

    settings = settings_of()
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
        predicted = forecast(left, cache, backend=backend_name(), measure=pace_measure(settings))
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
            write_report(out, dataset)
            print(f"{stopped}; the same command continues it", file=sys.stderr)
            raise typer.Exit(130) from None
    print(write_report(out, dataset))


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

    dataset = load_dataset(data, cache_dir=settings_of().cache_dir)
    for folder in folders:
        print(backfill_predictions(folder, dataset))
