"""The ``fer_sweep`` command: its Typer app, every command registered in the order ``--help``
lists them, and :func:`main`.

The commands live by what they work on: :mod:`._train_commands` (the networks, the dataset,
one training run), :mod:`._sweep_commands` (sweep files, studies, workers, the UI) and
:mod:`._result_commands` (ranking, reports, claims, the reproduction); the options they
share are :mod:`._options`. Each command imports what it needs when it runs, so
``fer_sweep --help`` and ``sweep --plan`` load neither Keras nor MLflow.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up chatter is noise to a user of this CLI; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer  # noqa: E402

from fer_sweep.cli import _result_commands as results  # noqa: E402
from fer_sweep.cli import _sweep_commands as sweeps  # noqa: E402
from fer_sweep.cli import _train_commands as training  # noqa: E402
from fer_sweep.cli._run import run_app  # noqa: E402

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna sweeps over the thesis's VGG-style FER-2013 networks, tracked in MLflow.",
)
data_app = typer.Typer(no_args_is_help=True, help="The FER-2013 dataset: check and cache it.")
study_app = typer.Typer(no_args_is_help=True, help="Create studies for workers to join.")
predictions_app = typer.Typer(no_args_is_help=True, help="Per-image test predictions of runs.")

app.command()(sweeps.schema)
app.command()(training.models)
app.add_typer(data_app, name="data")
data_app.command("check")(training.data_check)
data_app.command("synthetic")(training.data_synthetic)
app.command()(training.train)
app.command()(sweeps.sweep)
app.command()(sweeps.worker)
app.add_typer(study_app, name="study")
study_app.command("create")(sweeps.study_create)
app.command()(results.best)
app.command()(results.ensemble)
app.command()(results.report)
app.command("claims")(results.claims_command)
app.command()(sweeps.ui)
app.command()(results.reproduce)
app.add_typer(predictions_app, name="predictions")
predictions_app.command("backfill")(results.predictions_backfill)


def main(argv: list[str] | None = None) -> None:
    run_app(app, "fer_sweep", argv)
