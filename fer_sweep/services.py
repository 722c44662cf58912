"""Local services for a study that outgrows SQLite: PostgreSQL and an MLflow tracking server.

One private PostgreSQL cluster (databases ``optuna`` and ``mlflow``) and one MLflow server
on its PostgreSQL database, serving the artifacts from a folder, both on 127.0.0.1 only.
This is what ``make services`` starts for a user on one machine and what the distributed test
starts for itself; for many machines, run the same two programs where the workers can reach
them (see the README's "many machines" section)::

    python -m fer_sweep.services start [--dir .services] [--pg-port 5433] [--mlflow-port 5001]
    python -m fer_sweep.services status|stop [--dir .services]
    python -m fer_sweep.services install     # apt-get install postgresql, if it is missing

``start`` prints the two URLs and writes them to ``DIR/env`` (``source .services/env`` sets
``FER_SWEEP_STORAGE`` and ``MLFLOW_TRACKING_URI``). The cluster trusts local connections
(loopback only); a shared server needs a password in the URL instead.

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` user that
the Debian package creates, so ``DIR`` must be a folder that user can reach.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from fer_sweep.errors import UserError

PG_USER = "fer_sweep"
DATABASES = ("optuna", "mlflow")
DEFAULT_DIR = Path(".services")
STATE_FILE = "services.json"


@dataclass
class Services:
    """Where the running services are: their folder, ports and URLs."""

    dir: str
    pg_port: int
    mlflow_port: int
    mlflow_pid: int

    @property
    def storage(self) -> str:
        """Optuna's storage URL (``--storage``)."""
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.pg_port}/optuna"

    @property
    def mlflow_backend(self) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.pg_port}/mlflow"

    @property
    def tracking_uri(self) -> str:
        """The MLflow server's URL (``--tracking-uri``)."""
        return f"http://127.0.0.1:{self.mlflow_port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder with initdb and pg_ctl (the newest Debian version first), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    return None


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install_postgres() -> Path:
    """PostgreSQL's binaries, installed with apt-get (as root) when they are missing.

    Only the binaries are wanted: the package's own ``main`` cluster is not created, so
    nothing starts listening behind the user's back.
    """
    found = postgres_bin()
    if found is not None:
        return found
    if not can_install():
        raise UserError(
            "PostgreSQL is not installed and cannot be installed here (needs root and apt-get); "
            "install it (Debian: apt-get install postgresql) and try again"
        )
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists():
        conf.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("installing PostgreSQL (apt-get install postgresql)", file=sys.stderr)
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold",
         "postgresql"],
    ):  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
            raise UserError(f"{' '.join(cmd)} failed: {tail[0]}")
    found = postgres_bin()
    if found is None:
        raise UserError("apt-get installed postgresql but no initdb was found")
    return found


def _as_owner(cmd: list[str]) -> list[str]:
    """Run a PostgreSQL program as ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def _run(cmd: list[str], what: str, timeout: float = 120) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        raise UserError(f"{what} failed: {tail[0]}")


def _owner_ids() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise UserError(
            "running as root, PostgreSQL needs a 'postgres' user (the Debian package creates it)"
        ) from None
    return user.pw_uid, user.pw_gid


def start_postgres(root: Path, port: int) -> None:
    """Create (first time) and start the cluster in ``root/pgdata`` on 127.0.0.1:``port``."""
    bindir = postgres_bin()
    if bindir is None:
        raise UserError("PostgreSQL is not installed (run: python -m fer_sweep.services install)")
    data = root / "pgdata"
    owner = _owner_ids()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if owner:
            os.chown(data, *owner)
        _run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", PG_USER,
                        "--auth=trust", "-E", "UTF8", "--locale=C"]), "initdb")  # fmt: skip
    log = root / "postgres.log"
    log.touch()
    if owner:
        os.chown(log, *owner)
    # TCP on loopback only, no Unix socket (the folder may not suit one).
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
    _run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                    "-w", "-t", "60", "start"]), f"starting PostgreSQL (see {log})")  # fmt: skip
    _create_databases(port)


def _create_databases(port: int) -> None:
    import psycopg2

    conn = None
    for _ in range(30):
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER,
                                    dbname="postgres", connect_timeout=5)  # fmt: skip
            break
        except psycopg2.OperationalError:
            time.sleep(1)
    if conn is None:
        raise UserError(f"PostgreSQL on 127.0.0.1:{port} does not answer")
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            for name in DATABASES:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def stop_postgres(root: Path) -> None:
    bindir = postgres_bin()
    data = root / "pgdata"
    if bindir is None or not (data / "postmaster.pid").exists():
        return
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                              "-t", "60", "stop"]), capture_output=True, timeout=90)  # fmt: skip


def start_mlflow(root: Path, backend: str, port: int, *, workers: int = 2) -> int:
    """Start ``mlflow server`` on 127.0.0.1:``port`` (artifacts in ``root/artifacts``)."""
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
           "--serve-artifacts", "--artifacts-destination", str(artifacts),
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip
    log = open(root / "mlflow.log", "ab")  # noqa: SIM115 - the server owns it
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}/health"
    deadline = time.time() + 180  # the first start creates MLflow's schema
    while time.time() < deadline:
        if proc.poll() is not None:
            raise UserError(f"the MLflow server exited ({proc.returncode}); see {root}/mlflow.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return proc.pid
        except OSError:
            pass
        time.sleep(1)
    _kill_group(proc.pid)
    raise UserError(f"the MLflow server did not answer on {url}; see {root}/mlflow.log")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start(root: Path = DEFAULT_DIR, *, pg_port: int | None = None,
          mlflow_port: int | None = None) -> Services:  # fmt: skip
    """Start both services (stopping nothing else); free ports are picked when not given."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if (root / STATE_FILE).exists():
        raise UserError(f"services already started in {root} (stop them first)")
    pg_port = pg_port or free_port()
    svc = Services(str(root), pg_port, mlflow_port or free_port(), 0)
    try:
        start_postgres(root, pg_port)
        svc.mlflow_pid = start_mlflow(root, svc.mlflow_backend, svc.mlflow_port)
    except BaseException:
        stop_postgres(root)
        raise
    (root / STATE_FILE).write_text(json.dumps(asdict(svc)))
    (root / "env").write_text(
        f"export FER_SWEEP_STORAGE={svc.storage}\nexport MLFLOW_TRACKING_URI={svc.tracking_uri}\n"
    )
    return svc


def load(root: Path = DEFAULT_DIR) -> Services | None:
    path = Path(root).resolve() / STATE_FILE
    return Services(**json.loads(path.read_text())) if path.exists() else None


def stop(root: Path = DEFAULT_DIR) -> None:
    """Stop the MLflow server and the cluster started in ``root`` (their data stays)."""
    root = Path(root).resolve()
    svc = load(root)
    if svc is not None and svc.mlflow_pid:
        _kill_group(svc.mlflow_pid)
    stop_postgres(root)
    (root / STATE_FILE).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fer_sweep.services", description=__doc__
                                     .split("\n")[0])  # fmt: skip
    parser.add_argument("action", choices=["start", "stop", "status", "install"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder")
    parser.add_argument("--pg-port", type=int, default=5433)
    parser.add_argument("--mlflow-port", type=int, default=5001)
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            print(f"PostgreSQL binaries: {install_postgres()}")
        elif args.action == "start":
            svc = start(args.dir, pg_port=args.pg_port, mlflow_port=args.mlflow_port)
            print(f"Optuna storage:  {svc.storage}\nMLflow server:   {svc.tracking_uri}\n"
                  f"(source {args.dir}/env to use them by default; "
                  f"python -m fer_sweep.services stop --dir {args.dir} stops them)")  # fmt: skip
        elif args.action == "stop":
            stop(args.dir)
            print(f"stopped the services in {args.dir}")
        else:
            svc = load(args.dir)
            if svc is None:
                print(f"no services started in {args.dir}")
                return 1
            print(f"Optuna storage:  {svc.storage}\nMLflow server:   {svc.tracking_uri} "
                  f"(pid {svc.mlflow_pid})")  # fmt: skip
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
