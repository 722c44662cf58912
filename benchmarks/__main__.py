"""``python -m benchmarks``: the throughput benchmark (:mod:`benchmarks.bench`) from a shell.

The benchmark module imports Keras at its top, so it is imported only inside the command,
after :func:`fer_sweep.cli.run_app` has chosen the backend and pooled TensorFlow's memory,
exactly as every fer-sweep command trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fer_sweep.cli import DataOpt, run_app
from fer_sweep.errors import UserError


def bench(
    data: DataOpt = None,
    arch: Annotated[str, typer.Option(help="architecture A-F")] = "C",
    quick: Annotated[bool, typer.Option("--quick", help="fewer, shorter rounds")] = False,
    out: Annotated[Path, typer.Option("--out", help="folder for the JSON result")] = Path(
        "benchmarks/results"
    ),
) -> None:
    """Throughput benchmark: the trainer beside a hand-written Keras baseline, same process."""
    from benchmarks.bench import render, run_benchmark
    from fer_sweep.data import resolve_data_path

    arch = arch.upper()
    if arch not in ("A", "B", "C", "D", "E", "F"):
        raise UserError(f"--arch {arch!r}: expected one of A, B, C, D, E, F")
    result = run_benchmark(data=resolve_data_path(data), arch=arch, quick=quick, out_dir=out)
    print(render(result))


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(bench)
    run_app(app, "python -m benchmarks", argv)


if __name__ == "__main__":
    main()
