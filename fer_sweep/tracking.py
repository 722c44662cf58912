"""MLflow: where runs go, what each run records, and how its status follows the work.

Default store (nothing to start by hand): MLflow on SQLite at ``mlruns/mlflow.db`` with
artifacts under ``mlruns/artifacts``. ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` point
elsewhere (for instance an MLflow tracking server shared by many workers).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from fer_sweep import __version__
from fer_sweep.config import TrainConfig
from fer_sweep.data import EMOTIONS
from fer_sweep.errors import UserError

STORE_DIR = Path("mlruns")
log = logging.getLogger(__name__)


def store_dir() -> Path:
    return Path(os.environ.get("FER_SWEEP_STORE", STORE_DIR)).resolve()


def tracking_uri(explicit: str | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def is_local(uri: str) -> bool:
    """Whether ``uri`` is a store on this machine's disk (not a tracking server)."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def connect(uri: str | None = None) -> MlflowClient:
    """A client on ``uri``, checked before any training starts.

    The first call on a new SQLite store creates its schema; doing it here, once, before
    workers start keeps parallel writers from racing through MLflow's migrations.
    """
    uri = tracking_uri(uri)
    # MLflow narrates schema creation and migrations at INFO; a user needs only problems.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith(("http://", "https://")):
        # MLflow's own default (7 retries, exponential backoff) blocks a trial for minutes per
        # call when the server is gone; a few retries ride out a restart. The env var wins.
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        _check_server(uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means "unreachable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"MLflow tracking store {uri} is unreachable: {first[:200]}") from None
    return client


HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}


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


def experiment_id(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if is_local(client.tracking_uri):
        location = (store_dir() / "artifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another worker created it between our lookup and our create.
        return client.get_experiment_by_name(name).experiment_id


def code_version() -> str:
    """The git commit of the checkout when there is one, else the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except OSError:
        pass
    return __version__


def start_run(
    client: MlflowClient,
    experiment: str,
    config: TrainConfig,
    *,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Create a RUNNING run carrying the whole resolved config as params."""
    all_tags = {"fer_sweep.code_version": code_version(), **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id(client, experiment), run_name=run_name, tags=all_tags)
    params = [Param(k, v) for k, v in config.to_params().items()]
    client.log_batch(run.info.run_id, params=params)
    return run.info.run_id


def config_from_run(client: MlflowClient, run_id: str) -> TrainConfig:
    """Rebuild the TrainConfig a run was started with (its params round-trip)."""
    from fer_sweep.config import make_config

    params = client.get_run(run_id).data.params
    values = {k: v for k, v in params.items() if k in TrainConfig.model_fields}
    return make_config(values, origin=f"run {run_id}")


class EpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics with ``step=epoch`` (1-based), as Keras reports them.

    A tracking store that fails mid-run must not kill the training: the failure is kept in
    ``errors`` and reported once at the end instead of being swallowed.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        super().__init__()
        self.client = client
        self.run_id = run_id
        self.errors: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch + 1) for k, v in (logs or {}).items()]
        try:
            self.client.log_batch(self.run_id, metrics=metrics)
        except Exception as err:  # noqa: BLE001 - tracking loss is reported, training goes on
            self.errors.append(f"epoch {epoch + 1}: {str(err).splitlines()[0][:200]}")
            if len(self.errors) == 1:
                print(f"warning: MLflow logging failed: {self.errors[0]}", file=sys.stderr)


def log_result(client: MlflowClient, run_id: str, result) -> None:
    """Final metrics, the confusion matrices, learning curves and checkpoints of a run."""
    from fer_sweep.plots import plot_confusion, plot_curves

    now = int(time.time() * 1000)
    step = result.epochs_trained
    final = {
        "epochs_trained": result.epochs_trained,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy,
        "final_val_accuracy": result.final_val_accuracy,
        "test_accuracy": result.test_final.accuracy,
        "best_test_accuracy": result.test_best.accuracy,
        "fit_seconds": result.fit_seconds,
        "eval_seconds": result.eval_seconds,
    }
    for name, report in (("test", result.test_final), ("best_test", result.test_best)):
        for label, acc in zip(list(EMOTIONS), report.per_class, strict=True):
            final[f"{name}_accuracy_{label}"] = acc
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in final.items()])
    client.set_tag(run_id, "fer_sweep.resumed_from_epoch", str(result.resumed_from_epoch))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name, report in (("final", result.test_final), ("best", result.test_best)):
            (out / f"confusion_{name}.json").write_text(
                json.dumps({"labels": list(EMOTIONS), **report.__dict__}, indent=1)
            )
            plot_confusion(report, out / f"confusion_{name}.png", title=f"PrivateTest, {name}")
        plot_curves(result.history, out / "learning_curves.png")
        (out / "history.json").write_text(json.dumps(result.history))
        client.log_artifacts(run_id, tmp, artifact_path="evaluation")
    for name in ("final.keras", "best.weights.h5"):
        if (result.workdir / name).exists():
            client.log_artifact(run_id, str(result.workdir / name), artifact_path="checkpoints")
    ckpt = result.workdir / "checkpoint"
    if ckpt.exists():
        client.log_artifacts(run_id, str(ckpt), artifact_path="checkpoints/last")
