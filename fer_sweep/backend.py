"""The Keras backend a process trains on, keeping TensorFlow out where it is not used, and
TensorFlow's CPU memory pooled where it is.

Keras 3 imports TensorFlow whenever it is installed, whatever the backend, only to seed it
and to recognise its types when saving a model. Under JAX or torch that costs seconds of
start-up and a second framework's threads and memory in every worker, and on a GPU machine
without TensorFlow the code must not need it anyway. So a process on another backend hides
TensorFlow from itself: Keras then sees it as not installed and goes on without it.
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path

# TensorFlow's default CPU allocator hands every freed tensor back to malloc, and glibc returns
# the large blocks to the kernel, so each training step faults the same pages in again and the
# kernel zeroes them: a third of a trial's CPU time went to page faults on the 2-core machine.
# TensorFlow's BFC allocator keeps freed blocks in a pool. `make bench` measures both (the
# "allocator" row). TensorFlow reads the variable once, when it creates its CPU allocator.
POOLED_ALLOCATOR = ("TF_CPU_ALLOCATOR_USE_BFC", "true")
# JAX reads its persistent compilation cache's folder from this variable when it starts.
JAX_CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


def name() -> str:
    """The backend Keras runs on (or will): tensorflow, jax, torch or numpy.

    Resolved the way Keras resolves it (``KERAS_BACKEND``, else ``keras.json`` in
    ``KERAS_HOME`` or ``~/.keras``, else TensorFlow) but without importing Keras, because
    importing it is what pulls TensorFlow in, and commands such as ``sweep --plan`` must stay
    light.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = str(base / ".keras")
    try:
        config = json.loads((Path(home).expanduser() / "keras.json").read_text())
    except (OSError, ValueError):
        return "tensorflow"
    return str(config.get("backend") or "tensorflow") if isinstance(config, dict) else "tensorflow"


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "tensorflow" or fullname.startswith("tensorflow."):
            raise ModuleNotFoundError(f"{fullname} is kept out under the {name()} backend")
        return None


def keep_tensorflow_out() -> None:
    """On a backend other than TensorFlow, make ``import tensorflow`` fail in this process."""
    if name() == "tensorflow" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _NoTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTensorFlow())


def pool_tensorflow_memory() -> None:
    """Have TensorFlow keep freed CPU memory in its own pool, unless the variable is already
    set (``TF_CPU_ALLOCATOR_USE_BFC=false`` keeps malloc). Must run before TensorFlow starts."""
    if name() == "tensorflow" and "tensorflow" not in sys.modules:
        os.environ.setdefault(*POOLED_ALLOCATOR)


def use_compilation_cache(folder: Path | None) -> None:
    """On the JAX backend, keep compiled programs in ``folder`` across processes (None: don't).

    Every trial builds a new model, so JAX compiles its train step anew (twice: the full
    batch and the epoch's smaller last one) even in the same process; with the persistent
    cache a later trial of the same shapes, a resumed run or a sibling worker loads the
    program from disk instead. A cache folder chosen in JAX's own way
    (``$JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) is left as it is, and so are JAX's
    thresholds of what is worth caching (``jax_persistent_cache_min_compile_time_secs``, 1 s
    by default). Before JAX is imported this only sets the variable JAX reads when it starts,
    so light commands stay light.
    """
    if folder is None or name() != "jax":
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if "jax" not in sys.modules:
        os.environ.setdefault(JAX_CACHE_VARIABLE, str(folder))
        return
    import jax

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(folder))


def tensorflow_allocator() -> str:
    """Which CPU allocator this process's TensorFlow uses: "pooled (BFC)" or "malloc".

    Only the BFC allocator keeps statistics, so asking for them tells the two apart: some
    TensorFlow builds refuse the question without it, TensorFlow 2.21 here answers with a
    peak of 0 bytes after the first tensor, which the pool never reports.
    """
    import tensorflow as tf

    tf.zeros(1)  # the allocator is created with the first tensor
    try:
        info = tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:
        return "malloc"
    return "pooled (BFC)" if info.get("peak", 0) > 0 else "malloc"


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Imports TensorFlow with the process's stderr (file descriptor 2) pointed at /dev/null.

    TensorFlow 2.21 logs through absl before absl is initialised, which ignores
    ``TF_CPP_MIN_LOG_LEVEL``: every process that imports it printed four lines (oneDNN, CPU
    features) to stderr, so even a one-line ``error:`` came with them. They are all written
    during the import; Python exceptions from it are raised after stderr is back.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: find the real spec, then wrap its loader
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner) -> None:
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            self.inner.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_tensorflow_import() -> None:
    """Keep TensorFlow's start-up log lines off stderr unless ``TF_CPP_MIN_LOG_LEVEL=0``."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlow | _NoTensorFlow) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
