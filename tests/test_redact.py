"""Secrets stay out of messages: the masking function, the errors that use it, and the error
lines of commands given a storage or tracking URL with a password."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys

import pytest

from fer_sweep.errors import UserError, first_line
from fer_sweep.lifecycle import open_storage
from fer_sweep.redact import MASK, mask_logs_and_tracebacks, redact
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect

SECRET = "hunter2-s3cr%40t"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"postgresql://ann:{SECRET}@db:5432/optuna", "postgresql://ann:***@db:5432/optuna"),
        (
            f"at postgresql+psycopg2://ann:{SECRET}@db/optuna: refused",
            "at postgresql+psycopg2://ann:***@db/optuna: refused",
        ),
        (f"'mysql://u:{SECRET}@h/x'", "'mysql://u:***@h/x'"),
        (f"https://bob:{SECRET}@mlflow.lab:443", "https://bob:***@mlflow.lab:443"),
        (
            f"postgresql://db/optuna?user=ann&password={SECRET}",
            "postgresql://db/optuna?user=ann&password=***",
        ),
        (
            f"postgresql://db/optuna?password={SECRET}&sslmode=require",
            "postgresql://db/optuna?password=***&sslmode=require",
        ),
    ],
)
def test_a_password_in_a_url_is_masked(text, expected):
    assert redact(text, environ={}) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql+psycopg2://fer_sweep@127.0.0.1:5433/optuna",
        "http://127.0.0.1:5001",
        "sqlite:////home/ann/mlruns/optuna.db",
        "no study 'x' in sqlite:///mlruns/optuna.db (studies: a, b)",
    ],
)
def test_text_without_a_secret_is_unchanged(text):
    assert redact(text, environ={}) == text


def test_the_value_of_a_credential_variable_is_masked_anywhere():
    env = {"PGPASSWORD": "tr0ub4dor", "MLFLOW_TRACKING_PASSWORD": "c0rrect-horse", "HOME": "/r"}
    text = "libpq said tr0ub4dor; MLflow c0rrect-horse; home /r"
    assert redact(text, environ=env) == f"libpq said {MASK}; MLflow {MASK}; home /r"
    # Too short to mask by value: it would blank out unrelated text.
    assert redact("a 1 in 10", environ={"PGPASSWORD": "1"}) == "a 1 in 10"


def test_errors_and_their_one_line_reports_are_masked():
    url = f"postgresql://ann:{SECRET}@db/optuna"
    assert SECRET not in str(UserError(f"storage {url} is down"))
    assert SECRET not in first_line(RuntimeError(f"could not parse {url}\nsecond line"))
    assert first_line(RuntimeError(f"could not parse {url}")).endswith("ann:***@db/optuna")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://ann:{SECRET}@127.0.0.1:{{port}}/optuna",  # nobody listens there
        f"postgresql://ann:{SECRET}@127.0.0.1:notaport/optuna",  # malformed
        f"postgresql://127.0.0.1:{{port}}/optuna?user=ann&password={SECRET}",
    ],
)
def test_an_unreachable_or_bad_storage_url_names_no_password(url):
    url = url.format(port=closed_port())
    with pytest.raises(UserError) as err:
        open_storage(Settings.resolve(storage=url))
    assert "Optuna storage" in str(err.value) and "postgresql://" in str(err.value)
    assert SECRET not in str(err.value)
    assert MASK in str(err.value)


def test_a_tracking_store_url_with_a_password_is_masked_in_its_error():
    url = f"postgresql+psycopg2://ann:{SECRET}@127.0.0.1:{closed_port()}/mlflow"
    with pytest.raises(UserError) as err:
        connect(url)
    assert "unreachable" in str(err.value)
    assert SECRET not in str(err.value)


def test_the_cli_prints_one_error_line_without_the_password(tmp_path):
    url = f"postgresql://ann:{SECRET}@127.0.0.1:{closed_port()}/optuna"
    done = subprocess.run(
        [sys.executable, "-m", "fer_sweep", "best", "--storage", url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert "postgresql://ann:***@127.0.0.1" in lines[0]


def test_log_lines_and_tracebacks_are_masked(monkeypatch, capsys):
    # Restored afterwards: the record factory and the excepthook are the process's.
    monkeypatch.setattr(logging, "_logRecordFactory", logging.getLogRecordFactory())
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    mask_logs_and_tracebacks()
    mask_logs_and_tracebacks()  # a second call wraps nothing twice
    record = logging.getLogRecordFactory()(
        "x", logging.WARNING, __file__, 1, "retrying %s", (f"mysql://u:{SECRET}@h/db",), None
    )
    assert record.getMessage() == "retrying mysql://u:***@h/db"
    try:
        raise RuntimeError(f"engine for postgresql://u:{SECRET}@h/db failed")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    err = capsys.readouterr().err
    assert "RuntimeError: engine for postgresql://u:***@h/db failed" in err
    assert SECRET not in err
