"""Running a command line as fer-sweep runs its own: the backend set up before Keras loads,
secrets masked, a user's mistake as one line and exit code 2, a stop on request as 130."""

from __future__ import annotations

import os
import sys

import typer

from fer_sweep.errors import StoppedOnRequest, UserError
from fer_sweep.redact import mask_logs_and_tracebacks


def run_app(typer_app: typer.Typer, prog_name: str, argv: list[str] | None = None) -> None:
    """Run a command line as fer-sweep runs its own: the backend set up before Keras loads,
    secrets masked, a user's mistake as one line and exit 2 (``benchmarks.bench`` uses it)."""
    from fer_sweep.backend import (
        keep_tensorflow_out,
        pool_tensorflow_memory,
        quiet_tensorflow_import,
    )

    mask_logs_and_tracebacks()
    keep_tensorflow_out()
    pool_tensorflow_memory()
    quiet_tensorflow_import()
    try:
        code = typer_app(args=argv, prog_name=prog_name, standalone_mode=False)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except StoppedOnRequest as stopped:
        print(stopped, file=sys.stderr)
        _quit_now()
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        _quit_now()
    except typer.TyperException as exc:  # usage errors: one line, as every other mistake
        print(f"error: {usage_line(exc)}", file=sys.stderr)
        sys.exit(2)
    # Outside standalone mode typer turns a KeyboardInterrupt into a returned 130.
    if isinstance(code, int) and code:
        if code == 130:
            _quit_now()
        sys.exit(code)


def usage_line(exc: typer.TyperException) -> str:
    """A usage error (a bad or missing option) in one line, naming the command to ask."""
    message = " ".join(getattr(exc, "format_message", exc.__str__)().split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "fer_sweep"
    return f"{message} (see: {where} --help)"


def _quit_now() -> None:
    """Leave at once after a Ctrl-C that was not (or no longer) handled gracefully.

    What keeps finished work safe (checkpoints, MLflow run status, Optuna trial state) ran
    while the interrupt unwound the stack. What is left is the interpreter's teardown, and
    there a TensorFlow input pipeline can wait forever for a thread that needs the GIL (seen:
    ``reproduce`` stuck in tf.data's iterator destructor after the second Ctrl-C), so the
    process exits without it.
    """
    print("interrupted", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
