"""Settings are resolved once: an option, else its environment variable, else the default."""

import os
from pathlib import Path

import pytest

from fer_sweep.errors import UserError
from fer_sweep.settings import Settings


def test_options_win_over_the_environment_which_wins_over_defaults(tmp_path):
    env = {
        "FER_SWEEP_STORE": str(tmp_path / "store"),
        "FER_SWEEP_GRACE": "9",
        "FER_SWEEP_HEARTBEAT": "2",
        "FER_SWEEP_MAX_RETRIES": "0",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "FER_SWEEP_CACHE": "~/elsewhere",
    }
    s = Settings.resolve(storage="postgresql://db/optuna", environ=env)
    assert s.cache_dir == Path.home() / "elsewhere"
    assert Settings.resolve(cache_dir=tmp_path, environ=env).cache_dir == tmp_path
    assert s.store_dir == tmp_path / "store" and s.storage == "postgresql://db/optuna"
    assert s.tracking_uri == "http://mlflow:5000" and not s.tracks_locally
    assert (s.heartbeat, s.grace, s.max_retries) == (2, 9, 0)
    assert s.artifact_root is None  # a tracking server keeps its own artifacts
    # A child process resolves the same settings from what it is handed.
    assert Settings.resolve(environ=s.environ()) == s

    d = Settings.resolve(environ={})
    assert d.store_dir == Path("mlruns").resolve()
    assert d.storage == f"sqlite:///{d.store_dir / 'optuna.db'}"
    assert d.tracking_uri == f"sqlite:///{d.store_dir / 'mlflow.db'}"
    assert (d.heartbeat, d.grace, d.max_retries) == (20, 60, 1)
    assert d.artifact_root == d.store_dir / "artifacts"
    assert d.workdir("s/trial-0001") == d.store_dir / "work" / "s" / "trial-0001"
    assert d.cache_dir == Path.home() / ".cache" / "fer-sweep"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FER_SWEEP_HEARTBEAT": "soon"}, "FER_SWEEP_HEARTBEAT='soon': expected a whole number"),
        ({"FER_SWEEP_GRACE": "5", "FER_SWEEP_HEARTBEAT": "5"}, "must be longer than the heartbeat"),
        ({"FER_SWEEP_MAX_RETRIES": "-1"}, "expected at least 0"),
    ],
)
def test_a_bad_setting_is_one_line(env, message):
    with pytest.raises(UserError, match=message):
        Settings.resolve(environ=env)


def test_the_jax_compilation_cache_lives_in_the_cache_folder_unless_moved_or_off(tmp_path):
    s = Settings.resolve(environ={"FER_SWEEP_CACHE": str(tmp_path)})
    assert s.jax_cache == tmp_path / "jax"
    assert Settings.resolve(environ=s.environ()) == s
    moved = Settings.resolve(environ={"FER_SWEEP_JAX_CACHE": str(tmp_path / "xla")})
    assert moved.jax_cache == tmp_path / "xla"
    off = Settings.resolve(environ={"FER_SWEEP_JAX_CACHE": "off"})
    assert off.jax_cache is None
    assert Settings.resolve(environ=off.environ()).jax_cache is None  # a worker's too
    assert Settings.resolve(jax_cache="off", environ=s.environ()).jax_cache is None


def test_the_compilation_cache_is_set_for_jax_only_and_never_over_the_users(tmp_path, monkeypatch):
    import sys

    from fer_sweep import backend

    monkeypatch.delenv(backend.JAX_CACHE_VARIABLE, raising=False)
    monkeypatch.delitem(sys.modules, "jax", raising=False)  # JAX not started yet
    monkeypatch.setattr(backend, "name", lambda: "tensorflow")
    backend.use_compilation_cache(tmp_path / "jax")
    assert backend.JAX_CACHE_VARIABLE not in os.environ and not (tmp_path / "jax").exists()

    monkeypatch.setattr(backend, "name", lambda: "jax")
    backend.use_compilation_cache(None)  # FER_SWEEP_JAX_CACHE=off
    assert backend.JAX_CACHE_VARIABLE not in os.environ
    backend.use_compilation_cache(tmp_path / "jax")
    assert os.environ[backend.JAX_CACHE_VARIABLE] == str(tmp_path / "jax")
    assert (tmp_path / "jax").is_dir()
    monkeypatch.setenv(backend.JAX_CACHE_VARIABLE, "/users/own")
    backend.use_compilation_cache(tmp_path / "jax")
    assert os.environ[backend.JAX_CACHE_VARIABLE] == "/users/own"
