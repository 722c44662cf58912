"""The parts of `make services` that need no PostgreSQL: the secrets file and the move of an
old password-less cluster to scram-sha-256 (tests/test_distributed.py starts the real ones)."""

from __future__ import annotations

from tools import services

HBA = """\
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust   # loopback
host    replication     all             ::1/128                 scram-sha-256
"""


def test_the_env_file_is_the_owners_only_and_reads_back(tmp_path):
    (tmp_path / services.ENV_FILE).write_text("old\n")
    (tmp_path / services.ENV_FILE).chmod(0o644)
    values = {
        "FER_SWEEP_STORAGE": "postgresql+psycopg2://fer_sweep@127.0.0.1:5433/optuna",
        "PGPASSWORD": "a b'c\"$d",
        "MLFLOW_TRACKING_PASSWORD": services.new_secret(),
    }
    path = services.write_env(tmp_path, values)
    assert path.stat().st_mode & 0o777 == 0o600
    assert services.read_env(tmp_path) == values
    assert path.read_text().startswith("export FER_SWEEP_STORAGE=postgresql")
    assert services.read_env(tmp_path / "none") == {}


def test_generated_secrets_are_long_and_new_each_time():
    made = {services.new_secret() for _ in range(20)}
    assert len(made) == 20 and all(len(s) == 32 for s in made)


def test_a_trusting_pg_hba_is_turned_to_passwords(tmp_path):
    hba = tmp_path / "pg_hba.conf"
    hba.write_text(HBA)
    assert services._trusts(hba)
    hba.write_text("".join(services._scram(line) for line in HBA.splitlines(keepends=True)))
    assert not services._trusts(hba)
    rules = [line.split() for line in hba.read_text().splitlines() if not line.startswith("#")]
    assert rules == [
        ["local", "all", "all", "scram-sha-256"],
        ["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
        ["host", "replication", "all", "::1/128", "scram-sha-256"],
    ]
