"""A training run's progress on the console: a bar per epoch with its ETA (``train``)."""

from __future__ import annotations

import time

import keras
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class EpochProgress(keras.callbacks.Callback):
    """One bar for the run (epochs) and one for the current epoch (batches), both with ETA.

    On a console that is not a terminal (``nohup``, a redirect, a CI log) Rich draws live bars
    only when they stop, so a run of hours would show nothing until its end: there each epoch
    prints one plain line instead, as soon as it ends.

    It never reads a batch's logs: on JAX (or torch) the values are arrays still being
    computed on the device, and reading one waits for the step to finish, so a bar that read
    them every batch would sync host and device at every step. It only counts batches, and
    shows the losses and accuracies Keras hands over at the end of each epoch. Being
    ``async_safe``, it lets Keras call the per-batch hooks from a background thread on the
    backends that allow it (Keras does so only when no callback forbids it).
    """

    async_safe = True  # the batch hook counts under Rich's lock and never touches the logs

    def __init__(self, epochs: int, steps_per_epoch: int, *, console: Console | None = None):
        super().__init__()
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
            transient=False,
        )
        self.live = self.progress.console.is_terminal
        self._run = None
        self._epoch = None
        self._started = None
        self._epoch_started = None

    def on_train_begin(self, logs=None):
        self._started = time.monotonic()
        if self.live:
            self.progress.start()
        self._run = self.progress.add_task("run", total=self.epochs, metrics="")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.monotonic()
        if not self.live:
            return
        self.progress.update(self._run, completed=epoch)
        if self._epoch is not None:
            self.progress.remove_task(self._epoch)
        self._epoch = self.progress.add_task(f"epoch {epoch + 1}", total=self.steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        # Called from Keras's thread pool under async dispatch, where batches may finish in
        # any order: advance by one rather than setting ``batch + 1``. ``logs`` stays unread.
        if self.live:
            self.progress.advance(self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = " ".join(
            f"{k} {logs[k]:.4f}"
            for k in ("loss", "accuracy", "val_loss", "val_accuracy")
            if k in logs
        )
        if self.live:
            self.progress.update(self._run, completed=epoch + 1, metrics=shown)
            return
        now = time.monotonic()
        self.progress.console.print(
            f"epoch {epoch + 1}/{self.epochs}  {shown}  {now - self._epoch_started:.0f} s "
            f"(run {(now - self._started) / 60:.1f} min)",
            highlight=False,
            soft_wrap=True,
        )
        self.progress.console.file.flush()

    def on_train_end(self, logs=None):
        if self.live:
            self.progress.stop()
