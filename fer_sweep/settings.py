"""Where a sweep keeps its state and how patient its workers are, resolved once.

The command line builds one :class:`Settings` from its options and the environment
(:meth:`Settings.resolve`) and hands it down; nothing below the CLI reads these environment
variables. An option wins over its variable, which wins over the default:

==================  ===========================  ===============================================
setting             variable                     default
==================  ===========================  ===============================================
``store_dir``       ``FER_SWEEP_STORE``          ``mlruns`` (resolved to an absolute path)
``storage``         ``FER_SWEEP_STORAGE``        ``sqlite:///<store_dir>/optuna.db``
``tracking_uri``    ``MLFLOW_TRACKING_URI``      ``sqlite:///<store_dir>/mlflow.db``
``heartbeat``       ``FER_SWEEP_HEARTBEAT``      20 s between a running trial's heartbeats
``grace``           ``FER_SWEEP_GRACE``          60 s of silence before a trial counts as lost
``max_retries``     ``FER_SWEEP_MAX_RETRIES``    1 retry of a configuration that failed
``cache_dir``       ``FER_SWEEP_CACHE``          ``~/.cache/fer-sweep`` (parsed FER-2013 caches)
``jax_cache``       ``FER_SWEEP_JAX_CACHE``      ``<cache_dir>/jax``: JAX's persistent compilation
                                                 cache (``off``: none)
``measure_pace``    ``FER_SWEEP_MEASURE_PACE``   on: a short fit measures the pace of a forecast
                                                 when none is cached (``off``: never)
==================  ===========================  ===============================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fer_sweep.errors import StoreError, UserError, store_error

STORE_ENV = "FER_SWEEP_STORE"
STORAGE_ENV = "FER_SWEEP_STORAGE"
TRACKING_ENV = "MLFLOW_TRACKING_URI"
HEARTBEAT_ENV = "FER_SWEEP_HEARTBEAT"
GRACE_ENV = "FER_SWEEP_GRACE"
RETRIES_ENV = "FER_SWEEP_MAX_RETRIES"
CACHE_ENV = "FER_SWEEP_CACHE"
JAX_CACHE_ENV = "FER_SWEEP_JAX_CACHE"
JAX_CACHE_OFF = "off"
MEASURE_PACE_ENV = "FER_SWEEP_MEASURE_PACE"

DEFAULT_STORE = Path("mlruns")
DEFAULT_HEARTBEAT = 20
DEFAULT_GRACE = 60
DEFAULT_MAX_RETRIES = 1
DEFAULT_CACHE = Path("~/.cache/fer-sweep")


def cache_dir_from(explicit: str | os.PathLike | None, environ: Mapping[str, str]) -> Path:
    """The data cache folder: ``explicit``, else ``$FER_SWEEP_CACHE``, else the default."""
    chosen = str(explicit or "") or environ.get(CACHE_ENV, "") or str(DEFAULT_CACHE)
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything the orchestration layer needs to know about where and how it runs.

    Args:
        store_dir: the local state folder: default stores, checkpoints of running trials
            (``work/``) and worker logs (``logs/``).
        storage: the Optuna storage URL.
        tracking_uri: the MLflow tracking URI.
        heartbeat: seconds between a running trial's heartbeats.
        grace: seconds without a heartbeat after which a trial's worker is presumed dead.
        max_retries: how many times a configuration whose attempt failed (an error, a lost
            worker) is tried again before it is recorded as failed for good.
        cache_dir: where parsed FER-2013 files are cached (one HDF5 file per source).
        jax_cache: JAX's persistent compilation cache, so that repeated trials and worker
            processes reuse compiled train steps (None: no cache); used on the JAX backend
            only (:func:`fer_sweep.backend.use_compilation_cache`).
        measure_pace: whether a forecast with no cached pace measures one with a short fit
            (:mod:`fer_sweep.lifecycle._forecast`); off, the forecast says the pace is unknown.
    """

    store_dir: Path
    storage: str
    tracking_uri: str
    heartbeat: int = DEFAULT_HEARTBEAT
    grace: int = DEFAULT_GRACE
    max_retries: int = DEFAULT_MAX_RETRIES
    cache_dir: Path = DEFAULT_CACHE.expanduser()
    jax_cache: Path | None = DEFAULT_CACHE.expanduser() / "jax"
    measure_pace: bool = True

    @classmethod
    def resolve(
        cls,
        *,
        store_dir: str | Path | None = None,
        storage: str | None = None,
        tracking_uri: str | None = None,
        heartbeat: int | None = None,
        grace: int | None = None,
        max_retries: int | None = None,
        cache_dir: str | Path | None = None,
        jax_cache: str | Path | None = None,
        measure_pace: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Options first, then the environment (``os.environ`` unless given), then defaults.

        ``jax_cache`` (or ``$FER_SWEEP_JAX_CACHE``) ``"off"`` turns the compilation cache off.
        """
        env = os.environ if environ is None else environ
        store = Path(store_dir or env.get(STORE_ENV) or DEFAULT_STORE).resolve()
        beat = heartbeat if heartbeat is not None else _whole(env, HEARTBEAT_ENV, DEFAULT_HEARTBEAT)
        wait = grace if grace is not None else _whole(env, GRACE_ENV, DEFAULT_GRACE)
        if beat < 1 or wait < 1:
            raise UserError(f"heartbeat ({beat} s) and grace ({wait} s) must be at least 1 s")
        if wait <= beat:
            raise UserError(
                f"the grace period ({wait} s, ${GRACE_ENV}) must be longer than the "
                f"heartbeat ({beat} s, ${HEARTBEAT_ENV})"
            )
        retries = max_retries
        if retries is None:
            retries = _whole(env, RETRIES_ENV, DEFAULT_MAX_RETRIES, least=0)
        if retries < 0:
            raise UserError(f"max retries {retries}: expected 0 or more")
        cache = cache_dir_from(cache_dir, env)
        jax = str(jax_cache or "") or env.get(JAX_CACHE_ENV, "").strip() or str(cache / "jax")
        if measure_pace is None:
            raw = env.get(MEASURE_PACE_ENV, "").strip().lower() or "on"
            if raw not in ("on", "off"):
                raise UserError(f"${MEASURE_PACE_ENV}={raw!r}: expected on or off")
            measure_pace = raw == "on"
        optuna_url = storage or env.get(STORAGE_ENV) or f"sqlite:///{store / 'optuna.db'}"
        mlflow_uri = tracking_uri or env.get(TRACKING_ENV) or f"sqlite:///{store / 'mlflow.db'}"
        for what, url, problem in (
            ("Optuna storage URL", optuna_url, malformed(optuna_url)),
            ("MLflow tracking URI", mlflow_uri, malformed(mlflow_uri, tracking=True)),
        ):
            if problem:  # checked before anything is loaded, and never called "unreachable"
                raise UserError(f"{what} {url} is malformed: {problem}")
        return cls(
            store_dir=store,
            storage=optuna_url,
            tracking_uri=mlflow_uri,
            heartbeat=beat,
            grace=wait,
            max_retries=retries,
            cache_dir=cache,
            jax_cache=None if jax.lower() == JAX_CACHE_OFF else Path(jax).expanduser(),
            measure_pace=measure_pace,
        )

    def workdir(self, key: str) -> Path:
        """The local folder for one run's checkpoints (kept so an interrupted run resumes)."""
        return self.store_dir / "work" / key

    @property
    def artifacts_dir(self) -> Path:
        """Where a local MLflow store keeps its artifacts."""
        return self.store_dir / "artifacts"

    @property
    def tracks_locally(self) -> bool:
        """Whether the tracking store is on this machine's disk (not a tracking server)."""
        return is_local(self.tracking_uri)

    @property
    def artifact_root(self) -> Path | None:
        """Where new experiments keep their artifacts: under the store folder for a local
        store; a tracking server decides for itself (None)."""
        return self.artifacts_dir if self.tracks_locally else None

    @property
    def logs_dir(self) -> Path:
        """Where the worker processes of ``sweep --jobs N`` write their output."""
        return self.store_dir / "logs"

    def environ(self) -> dict[str, str]:
        """These settings as environment variables, for a child process that resolves its own."""
        return {
            STORE_ENV: str(self.store_dir),
            STORAGE_ENV: self.storage,
            TRACKING_ENV: self.tracking_uri,
            HEARTBEAT_ENV: str(self.heartbeat),
            GRACE_ENV: str(self.grace),
            RETRIES_ENV: str(self.max_retries),
            CACHE_ENV: str(self.cache_dir),
            JAX_CACHE_ENV: str(self.jax_cache) if self.jax_cache else JAX_CACHE_OFF,
            MEASURE_PACE_ENV: "on" if self.measure_pace else "off",
        }


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


def malformed(url: str, *, tracking: bool = False) -> str | None:
    """Why ``url`` cannot be parsed as an Optuna storage (or, with ``tracking``, an MLflow
    tracking URI), or None when it can. A URL that parses may still be unreachable."""
    if tracking and "://" not in url:
        return None  # a local folder
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if tracking and scheme in ("http", "https", "file", "databricks"):
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as err:
            return str(err)
        if scheme in ("http", "https") and not parts.hostname:
            return "no host name"
        return None
    if scheme not in DATABASE_SCHEMES:
        known = ", ".join(
            f"{s}://" for s in DATABASE_SCHEMES + (("http", "https") if tracking else ())
        )
        return f"expected a URL starting with one of {known}"
    from sqlalchemy.engine import make_url

    try:
        make_url(url)
    except ValueError as err:  # SQLAlchemy's ArgumentError is a ValueError too
        return "the port is not a number" if "int()" in str(err) else str(err)
    return None


def is_local(uri: str) -> bool:
    """Whether the MLflow ``uri`` is a store on this machine's disk (not a tracking server)."""
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def _whole(env: Mapping[str, str], name: str, default: int, *, least: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"${name}={raw!r}: expected a whole number") from None
    if value < least:
        raise UserError(f"${name}={raw!r}: expected at least {least}")
    return value


def check_sqlite_writable(what: str, url: str) -> None:
    """For a SQLite URL: a :class:`~fer_sweep.errors.StoreError` now, naming the file, when the
    store could be read but not written (a read-only file or folder), instead of a failure
    deep inside the first write. Root ignores file modes but not a read-only mount."""
    if not url.startswith("sqlite:///"):
        return
    import os
    import sqlite3

    path = Path(url.removeprefix("sqlite:///"))
    if not path.exists():
        if not os.access(path.parent, os.W_OK):
            raise StoreError(f"{what} {path}: cannot be created, its folder is read-only")
        return
    try:
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=120, isolation_level=None)
        try:
            # A write that is rolled back: only a real write finds a read-only file or mount.
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE fer_sweep_write_probe (x)")
        finally:
            if con.in_transaction:
                con.execute("ROLLBACK")
            con.close()
    except sqlite3.Error as err:
        raise store_error(what, url, err) from None
