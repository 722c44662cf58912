"""Secrets out of what fer-sweep prints, logs and tags: the one masking function.

A storage or tracking URL may carry a password (``postgresql://user:PASS@host/db``,
``...?password=PASS``), and a driver's error may repeat the URL it failed on. Every message
that can show one goes through :func:`redact`: :class:`~fer_sweep.errors.UserError` and
:func:`~fer_sweep.errors.first_line` (errors, run notes, the ``fer_sweep.error`` tag) call
it, and so does every line that names a storage or tracking URL.

>>> redact("Optuna storage postgresql://ann:s3cr%40t@db:5432/optuna is unreachable")
'Optuna storage postgresql://ann:***@db:5432/optuna is unreachable'

The values of the credential variables (``PGPASSWORD``, ``MLFLOW_TRACKING_PASSWORD``,
``MLFLOW_TRACKING_TOKEN``) are masked too, wherever they appear. A command that starts calls
:func:`mask_logs_and_tracebacks`, so log lines (fer-sweep's, Optuna's, MLflow's) and the
traceback of a bug pass through :func:`redact` as well.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping

MASK = "***"
# Environment variables whose values are secrets, masked wherever they appear in a text.
SECRET_ENV = ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
# Shorter values are not masked by value: "1" or "ab" would mask half a message.
MIN_SECRET_LENGTH = 4

# scheme://user:password@ -- the password as URL parsers read it: anything up to the last
# '@' before the host (SQLAlchemy and libpq take '[^@]*'), never across whitespace or quotes.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*):[^\s@'\"]*@")
# libpq's and SQLAlchemy's query form: ...?password=... or &password=...
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: object, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every password in a URL, and every credential variable's value, masked.

    Args:
        text: a message, a URL, an error (anything ``str`` takes).
        environ: where the credential variables are read (``os.environ`` unless given).
    """
    out = str(text)
    env = os.environ if environ is None else environ
    for name in SECRET_ENV:
        value = env.get(name, "")
        if len(value) >= MIN_SECRET_LENGTH:
            out = out.replace(value, MASK)
    out = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", out)
    return _QUERY_PASSWORD.sub(rf"\g<head>{MASK}", out)


def mask_logs_and_tracebacks() -> None:
    """From now on, mask secrets in every log record's message and in the traceback of an
    exception nobody caught (the bugs the CLI lets through). Calling it again changes nothing.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def masked_record(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call is logging's to report, not ours
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    masked_record.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked_record)

    def masked_traceback(kind, value, tb) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))

    sys.excepthook = masked_traceback
