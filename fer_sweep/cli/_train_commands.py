"""Commands about the networks, the dataset and one run: ``models``, ``data``, ``train``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fer_sweep.cli._options import (
    DataOpt,
    TrackingOpt,
    settings_of,
)
from fer_sweep.errors import UserError
from fer_sweep.redact import redact


def models() -> None:
    """Print the A-F architectures: weight layers and trainable parameters beside the thesis,
    and the networks of the presets beyond it."""
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
    print("\nbeyond the thesis (presets):")
    for preset in ("beyond-vgg", "beyond-resnet18"):
        config = load_config(preset=preset)
        count = trainable_parameters(build_model(config))
        print(f"{preset:<16}{count:>14,}  {config.network}")


def data_check(data: DataOpt = None) -> None:
    """Read (and cache) the dataset; print rows and class counts per split."""
    from fer_sweep.data import check_report, load_dataset, require_splits

    print(check_report(require_splits(load_dataset(data))))


def data_synthetic(
    path: Annotated[Path, typer.Argument(help="where to write the CSV (.csv or .csv.gz)")],
    per_split: Annotated[int, typer.Option(min=7, help="rows per split")] = 300,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """Write a small synthetic dataset in the FER-2013 schema (to try the tools without it)."""
    from fer_sweep.data import write_synthetic_csv

    print(write_synthetic_csv(path, per_split=per_split, seed=seed))


def train(
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML file of config keys")
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(help="thesis-top1 | thesis-top2 | thesis-top3 | beyond-vgg | beyond-resnet18"),
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

    settings = settings_of(tracking_uri=tracking_uri)
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
    if result.test_final_tencrop is not None:
        print(
            f"ten crops: PrivateTest final {result.test_final_tencrop.accuracy:.4f}  "
            f"at best epoch {result.test_best_tencrop.accuracy:.4f}"
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
