"""Local services for a study that outgrows SQLite: PostgreSQL and an MLflow tracking server.

One private PostgreSQL cluster (databases ``optuna`` and ``mlflow``) and one MLflow server
on its PostgreSQL database, serving the artifacts from a folder, both on 127.0.0.1 only.
This is what ``make services`` starts for a user on one machine and what the distributed test
starts for itself; for many machines, run the same two programs where the workers can reach
them (see the README's "many machines" section)::

    python -m tools.services start [--dir .services] [--pg-port 5433] [--mlflow-port 5001]
    python -m tools.services status|stop [--dir .services]
    python -m tools.services install     # apt-get install postgresql, if it is missing

Only those given the credentials get in. The cluster asks every connection for the password
of its one user (scram-sha-256, local and TCP alike); the MLflow server runs MLflow's
basic-auth app, whose admin is the only user it starts with. ``start`` generates both secrets
the first time and writes them, with the two URLs, only to ``DIR/env`` (mode 0600):
``source .services/env`` sets ``FER_SWEEP_STORAGE`` and ``MLFLOW_TRACKING_URI`` (neither holds
a password), ``PGPASSWORD`` (read by libpq) and ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` (read by MLflow's client). The servers get their secrets through
their environment, never their command lines, so ``ps`` shows none; a later ``start`` reads
them back from ``DIR/env``.

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` user that
the Debian package creates, so ``DIR`` must be a folder that user can reach.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import secrets
import shlex
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
from fer_sweep.redact import mask_logs_and_tracebacks

PG_USER = "fer_sweep"
DATABASES = ("optuna", "mlflow")
DEFAULT_DIR = Path(".services")
STATE_FILE = "services.json"
ENV_FILE = "env"
MLFLOW_ADMIN = "admin"
# The variables of DIR/env that hold secrets (libpq's and MLflow's client's own names).
PG_PASSWORD_ENV = "PGPASSWORD"
MLFLOW_USER_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"


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


def new_secret() -> str:
    """A generated password: 32 URL-safe characters (192 random bits)."""
    return secrets.token_urlsafe(24)


def read_env(root: Path = DEFAULT_DIR) -> dict[str, str]:
    """The variables ``start`` wrote to ``root/env`` (empty when it has not run there)."""
    path = Path(root) / ENV_FILE
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            out[name] = value
    return out


def write_env(root: Path, values: dict[str, str]) -> Path:
    """Write ``values`` as ``export NAME=VALUE`` lines to ``root/env``, readable by its owner
    only (0600 from its creation on, and again if the file was there before)."""
    path = Path(root) / ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
    return path


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
        ["apt-get", "install", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold", "postgresql"],
    ):
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


def start_postgres(root: Path, port: int, password: str) -> None:
    """Create (first time) and start the cluster in ``root/pgdata`` on 127.0.0.1:``port``.

    Its one user, ``fer_sweep``, has ``password``; every connection is asked for it
    (scram-sha-256). initdb reads it from a file that is removed at once.
    """
    bindir = postgres_bin()
    if bindir is None:
        raise UserError("PostgreSQL is not installed (run: python -m tools.services install)")
    data = root / "pgdata"
    owner = _owner_ids()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if owner:
            os.chown(data, *owner)
        pwfile = root / ".initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        if owner:
            os.chown(pwfile, *owner)
        try:
            _run(
                _as_owner(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        PG_USER,
                        "--auth=scram-sha-256",
                        f"--pwfile={pwfile}",
                        "-E",
                        "UTF8",
                        "--locale=C",
                    ]
                ),
                "initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)
    log = root / "postgres.log"
    log.touch()
    if owner:
        os.chown(log, *owner)
    # TCP on loopback only, no Unix socket (the folder may not suit one).
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
    _run(
        _as_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        f"starting PostgreSQL (see {log})",
    )
    hba = data / "pg_hba.conf"
    trusting = _trusts(hba)
    _create_databases(port, password, trusting=trusting)
    if trusting:
        # Made by an older fer-sweep with --auth=trust: from now on it asks for the password.
        lines = hba.read_text().splitlines(keepends=True)
        hba.write_text("".join(_scram(line) for line in lines))
        _run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "reload"]),
            "reloading PostgreSQL's pg_hba.conf",
        )


def _rule(line: str) -> list[str]:
    """The words of a pg_hba.conf rule (none for a comment or a blank line)."""
    return line.split("#", 1)[0].split()


def _trusts(hba: Path) -> bool:
    """Whether any rule of ``hba`` lets a connection in without a password."""
    return any(_rule(line)[-1:] == ["trust"] for line in hba.read_text().splitlines())


def _scram(line: str) -> str:
    words = _rule(line)
    if words[-1:] != ["trust"]:
        return line
    return " ".join([*words[:-1], "scram-sha-256"]) + "\n"


def _create_databases(port: int, password: str, *, trusting: bool = False) -> None:
    import psycopg2

    conn = None
    for _ in range(30):
        try:
            conn = psycopg2.connect(
                host="127.0.0.1",
                port=port,
                user=PG_USER,
                password=password,
                dbname="postgres",
                connect_timeout=5,
            )
            break
        except psycopg2.OperationalError as err:
            if "password" in str(err):  # up, and refusing this password: waiting won't help
                raise UserError(
                    f"PostgreSQL on 127.0.0.1:{port} refused the password in {ENV_FILE}: "
                    f"{str(err).strip().splitlines()[-1]}"
                ) from None
            time.sleep(1)
    if conn is None:
        raise UserError(f"PostgreSQL on 127.0.0.1:{port} does not answer")
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            if trusting:  # a cluster from before passwords: give its user one first
                cur.execute(f"ALTER ROLE {PG_USER} PASSWORD %s", (password,))
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
    subprocess.run(
        _as_owner(
            [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]
        ),
        capture_output=True,
        timeout=90,
    )


AUTH_CONFIG = """\
[mlflow]
# Written by tools/services.py. The admin's name and first password come from the
# environment of the server (MLFLOW_AUTH_ADMIN_USERNAME / _PASSWORD), never from this file.
default_permission = READ
database_uri = sqlite:///{database}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


def start_mlflow(
    root: Path,
    backend: str,
    port: int,
    *,
    admin_password: str,
    db_password: str | None = None,
    workers: int = 2,
) -> int:
    """Start ``mlflow server`` with MLflow's basic-auth app on 127.0.0.1:``port`` (artifacts in
    ``root/artifacts``, users in ``root/basic_auth.db``).

    The database password (of a PostgreSQL ``backend``) and the admin's password reach it
    through its environment; the admin (``admin``) is created with ``admin_password`` on the
    first start.
    """
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    auth_config = root / "basic_auth.ini"
    users = root / "basic_auth.db"
    auth_config.write_text(AUTH_CONFIG.format(database=users))
    # The users' password hashes: for the owner's eyes only (SQLite takes an empty file as new).
    os.close(os.open(users, os.O_WRONLY | os.O_CREAT, 0o600))
    users.chmod(0o600)
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        backend,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = {
        **os.environ,
        **({PG_PASSWORD_ENV: db_password} if db_password else {}),
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
        "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_ADMIN,
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
        # The auth app's CSRF key for the UI's forms; one server, so one per start will do.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": new_secret(),
    }
    log = open(root / "mlflow.log", "ab")  # noqa: SIM115 - the server owns it
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
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


def start(
    root: Path = DEFAULT_DIR, *, pg_port: int | None = None, mlflow_port: int | None = None
) -> Services:
    """Start both services (stopping nothing else); free ports are picked when not given."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if (root / STATE_FILE).exists():
        raise UserError(f"services already started in {root} (stop them first)")
    pg_port = pg_port or free_port()
    svc = Services(str(root), pg_port, mlflow_port or free_port(), 0)
    # The secrets of an earlier start (the cluster and the users keep them), else new ones.
    known = read_env(root)
    db_password = known.get(PG_PASSWORD_ENV) or new_secret()
    admin_password = known.get(MLFLOW_PASSWORD_ENV) or new_secret()
    # Written before anything starts, so that a start that fails half-way loses no secret.
    write_env(
        root,
        {
            "FER_SWEEP_STORAGE": svc.storage,
            PG_PASSWORD_ENV: db_password,
            "MLFLOW_TRACKING_URI": svc.tracking_uri,
            MLFLOW_USER_ENV: known.get(MLFLOW_USER_ENV) or MLFLOW_ADMIN,
            MLFLOW_PASSWORD_ENV: admin_password,
        },
    )
    try:
        start_postgres(root, pg_port, db_password)
        svc.mlflow_pid = start_mlflow(
            root,
            svc.mlflow_backend,
            svc.mlflow_port,
            db_password=db_password,
            admin_password=admin_password,
        )
    except BaseException:
        stop_postgres(root)
        raise
    (root / STATE_FILE).write_text(json.dumps(asdict(svc)))
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
    parser = argparse.ArgumentParser(
        prog="python -m tools.services", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status", "install"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder")
    parser.add_argument("--pg-port", type=int, default=5433)
    parser.add_argument("--mlflow-port", type=int, default=5001)
    args = parser.parse_args(argv)
    mask_logs_and_tracebacks()
    try:
        if args.action == "install":
            print(f"PostgreSQL binaries: {install_postgres()}")
        elif args.action == "start":
            svc = start(args.dir, pg_port=args.pg_port, mlflow_port=args.mlflow_port)
            print(
                f"Optuna storage:  {svc.storage}\nMLflow server:   {svc.tracking_uri}\n"
                f"(passwords in {args.dir}/{ENV_FILE}, mode 0600: source it to use both; "
                f"python -m tools.services stop --dir {args.dir} stops them)"
            )
        elif args.action == "stop":
            stop(args.dir)
            print(f"stopped the services in {args.dir}")
        else:
            svc = load(args.dir)
            if svc is None:
                print(f"no services started in {args.dir}")
                return 1
            print(
                f"Optuna storage:  {svc.storage}\nMLflow server:   {svc.tracking_uri} "
                f"(pid {svc.mlflow_pid})"
            )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
