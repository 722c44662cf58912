"""The process set-up every command gets: TensorFlow's CPU memory pooled on TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fer_sweep.backend import POOLED_ALLOCATOR

VAR = POOLED_ALLOCATOR[0]


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in (VAR, "KERAS_BACKEND")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


MAIN = (
    "import os\n"
    "from fer_sweep.cli._app import main\n"
    "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
    f"print(os.environ.get({VAR!r}))"
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "true"), ({VAR: "false"}, "false"), ({"KERAS_BACKEND": "jax"}, "None")],
)
def test_the_cli_pools_tensorflow_memory_unless_told_not_to(env, expected):
    assert _python(MAIN, **env) == expected


ALLOCATOR = (
    "from fer_sweep.backend import pool_tensorflow_memory, tensorflow_allocator\n"
    "pool_tensorflow_memory()\n"
    "print(tensorflow_allocator())"
)


@pytest.mark.parametrize(("env", "expected"), [({}, "pooled (BFC)"), ({VAR: "false"}, "malloc")])
def test_tensorflow_uses_the_allocator_set_up(env, expected):
    assert _python(ALLOCATOR, **env) == expected
