"""Terminal output: the live study view of a sweep, the epoch bars of one run."""

import io
import threading

import keras
import numpy as np
import optuna
import pytest
from rich.console import Console

from fer_sweep.lifecycle import TrialProgress
from fer_sweep.lifecycle._progress import StudyView
from fer_sweep.training import EpochProgress


def test_the_line_after_the_study_view_starts_a_line_of_its_own_in_a_file():
    study = optuna.create_study(study_name="glue", direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    with StudyView(study, n_trials=1, epochs=2, jobs=1, console=console):
        pass
    print("study glue: 1 complete", file=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "study glue: 1 complete"
    assert "1 done" in out.getvalue()


def _one_epoch(bar: EpochProgress, epoch: int) -> None:
    bar.on_epoch_begin(epoch)
    bar.on_train_batch_end(0)
    bar.on_epoch_end(epoch, {"loss": 1.25, "accuracy": 0.5, "val_accuracy": 0.375})


def test_each_epoch_is_a_line_in_a_log_file_as_soon_as_it_ends():
    out = io.StringIO()
    bar = EpochProgress(80, 449, console=Console(file=out, force_terminal=False, width=100))
    bar.on_train_begin()
    _one_epoch(bar, 4)  # a run resumed after epoch 4
    # Written before the run ends: a log followed during a run of hours shows every epoch.
    assert out.getvalue().startswith("epoch 5/80  loss 1.2500 accuracy 0.5000 val_accuracy 0.3750")
    _one_epoch(bar, 5)
    bar.on_train_end()
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 5/80", "epoch 6/80"]


def test_a_terminal_gets_the_bars_not_the_lines():
    out = io.StringIO()
    bar = EpochProgress(3, 10, console=Console(file=out, force_terminal=True, width=100))
    bar.on_train_begin()
    _one_epoch(bar, 0)
    bar.on_train_end()
    assert "epoch 1/3  loss" not in out.getvalue()
    assert "1/3" in out.getvalue()  # the run bar's count


class _Watched:
    """A log value that records every conversion of it and the thread that made it, as
    reading a JAX array (``float``, ``np.asarray``) waits for the device."""

    def __init__(self, value: float, reads: list) -> None:
        self.value, self.reads = value, reads

    def _read(self) -> float:
        self.reads.append(threading.current_thread())
        return self.value

    def __float__(self) -> float:
        return self._read()

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._read(), dtype=dtype)

    def __format__(self, spec: str) -> str:
        return format(self._read(), spec)


def _watched_logs(reads: list) -> dict:
    return {"loss": _Watched(1.5, reads), "accuracy": _Watched(0.25, reads)}


@pytest.mark.parametrize("terminal", [True, False])
def test_the_bar_counts_batches_without_reading_their_logs(terminal):
    out = io.StringIO()
    bar = EpochProgress(2, 20, console=Console(file=out, force_terminal=terminal, width=120))
    reads: list = []
    bar.on_train_begin()
    bar.on_epoch_begin(0)
    for batch in range(20):
        bar.on_train_batch_end(batch, _watched_logs(reads))
    assert reads == []
    if terminal:
        assert bar.progress.tasks[-1].completed == 20
    bar.on_epoch_end(0, {"loss": 1.25, "accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.375})
    bar.on_train_end()
    if not terminal:
        assert out.getvalue().startswith(
            "epoch 1/2  loss 1.2500 accuracy 0.5000 val_loss 1.5000 val_accuracy 0.3750"
        )
    else:
        assert "loss 1.2500 accuracy 0.5000 val_loss 1.5000 val_accuracy 0.3750" in out.getvalue()


class _ReadsEveryBatch(EpochProgress):
    async_safe = False  # what a callback with a batch hook is unless it says otherwise


@pytest.mark.parametrize(
    ("bar_type", "async_dispatch"), [(EpochProgress, True), (_ReadsEveryBatch, False)]
)
def test_on_a_thread_safe_backend_the_training_thread_converts_no_batch_logs(
    monkeypatch, bar_type, async_dispatch
):
    # JAX and torch are thread-safe backends: there Keras runs the batch hooks of callbacks
    # that allow it in a thread pool, so the logs' conversion to floats (which waits for the
    # device) happens there and not on the thread that dispatches the next step.
    from keras.src import backend

    monkeypatch.setattr(backend, "IS_THREAD_SAFE", True)
    out = io.StringIO()
    bar = bar_type(1, 30, console=Console(file=out, force_terminal=True, width=120))
    callbacks = keras.callbacks.CallbackList([bar])
    assert callbacks._async_train is async_dispatch
    reads: list = []
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    for batch in range(30):
        callbacks.on_train_batch_end(batch, _watched_logs(reads))
    callbacks.on_epoch_end(0, {"loss": 1.25, "accuracy": 0.5})
    callbacks.on_train_end()
    on_training_thread = sum(t is threading.current_thread() for t in reads)
    assert on_training_thread == (0 if async_dispatch else 60)
    assert bar.progress.tasks[-1].completed == 30  # every batch counted, in any order
    assert "loss 1.2500 accuracy 0.5000" in out.getvalue()


def test_no_callback_of_a_trial_turns_keras_async_batch_dispatch_off():
    # Keras dispatches batch hooks asynchronously only when every callback has none or is
    # async_safe; one careless on_train_batch_end would sync every step again.
    from keras.src.utils import is_default

    from fer_sweep.lifecycle._attempt import PruningCallback
    from fer_sweep.tracking._checkpoints import CheckpointUploader
    from fer_sweep.tracking._logging import EpochLogger
    from fer_sweep.training import _callbacks

    classes = [
        _callbacks.Bookkeeping,
        _callbacks.ResumablePlateau,
        _callbacks.ReportEpochs,
        _callbacks.CheckpointAndStop,
        EpochLogger,
        CheckpointUploader,
        PruningCallback,
        EpochProgress,
        TrialProgress,
    ]
    for cls in classes:
        hooks = ("on_batch_end", "on_train_batch_end")
        assert getattr(cls, "async_safe", False) or all(
            is_default(getattr(cls, h)) for h in hooks
        ), cls.__name__
