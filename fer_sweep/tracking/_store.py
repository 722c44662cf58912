"""The MLflow tracking store: a client for a URI, checked before anything trains."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from fer_sweep.errors import UserError, first_line, store_error
from fer_sweep.settings import check_sqlite_writable

HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


# What a tracking server with authentication (mlflow server --app-name basic-auth) answers a
# client it does not let in, as MLflow's client words it ("error code 401 != 200").
REFUSALS = {401: "no user or a wrong password", 403: "this user may not read it"}


def connect(uri: str) -> MlflowClient:
    """A client on ``uri``, checked before any training starts.

    The first call on a new SQLite store creates its schema; doing it here, once, before
    workers start keeps parallel writers from racing through MLflow's migrations.
    """
    # MLflow narrates schema creation and migrations at INFO; a user needs only problems.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if uri.startswith(("http://", "https://")):
        # MLflow's own default (7 retries, exponential backoff) blocks a trial for minutes per
        # call when the server is gone; a few retries ride out a restart. The env var wins.
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        _check_server(uri)
    try:
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        # Building the client opens (or creates) a SQLite store: a damaged file fails here.
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - a refused login, the store's fault, or "unreachable"
        reason = first_line(err)
        for code, what in REFUSALS.items():
            if f"error code {code} " in reason:
                raise UserError(
                    f"MLflow tracking server {uri} refused the connection ({code}: {what}); "
                    "give its user in $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD "
                    "(or ~/.mlflow/credentials)"
                ) from None
        raise store_error("MLflow tracking store", uri, err) from None
    check_sqlite_writable("MLflow tracking store", uri)
    return client


def _check_server(uri: str) -> None:
    """One quick request, so a server that is down is one clear line, not minutes of retries."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as reply:
            reply.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(f"MLflow tracking server {uri} is unreachable: {reason}") from None
