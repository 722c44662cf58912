"""Terminal progress: a bar per epoch with its ETA, as a Keras callback."""

from __future__ import annotations

import threading
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
            f"{k} {logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")
            if k in logs
        )  # fmt: skip
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


class StudyView:
    """Live terminal view of a study: trial states, the best so far, the running trials' epochs
    and an ETA for the rest of the sweep, refreshed from the study's storage."""

    def __init__(
        self, study, *, n_trials: int | None, epochs: int, jobs: int, console=None
    ) -> None:
        from rich.live import Live

        self.study = study
        self.n_trials = n_trials
        self.epochs = epochs
        self.jobs = jobs
        self.started = time.time()
        self.live = Live(self.render(), console=console, refresh_per_second=1, transient=False)

    def render(self):
        from optuna.trial import TrialState
        from rich.table import Table

        from fer_sweep.study import lineages, skipped, started

        trials = self.study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s and not skipped(t) for t in trials) for s in TrialState}
        lins = lineages(trials).values()
        # Attempts that trained, for the durations; skipped ones never did.
        finished = [t for lin in lins for t in lin if t.state in (TrialState.COMPLETE,
                    TrialState.PRUNED, TrialState.FAIL)]  # fmt: skip
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        table = Table(title=f"study {self.study.study_name}", show_header=False, box=None)
        target = "no limit" if self.n_trials is None else self.n_trials
        table.add_row(
            "trials",
            f"{count[TrialState.COMPLETE]} done, {count[TrialState.RUNNING]} running, "
            f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed, "
            f"{count[TrialState.WAITING]} queued, {sum(map(skipped, trials))} skipped; "
            f"{len(lins)} configuration(s) of {target}",
        )
        if complete:
            b = max(complete, key=lambda t: t.value)
            shown = " ".join(f"{k}={v}" for k, v in b.params.items())
            table.add_row("best", f"trial {b.number}: PublicTest {b.value:.4f}  {shown}")
        for t in trials:
            if t.state == TrialState.RUNNING:
                done = len(t.intermediate_values)
                last = t.intermediate_values.get(max(t.intermediate_values, default=0))
                shown = "starting" if last is None else f"PublicTest {last:.4f}"
                table.add_row(f"trial {t.number}", f"epoch {done}/{self.epochs}  {shown}")
        durations = [
            (t.datetime_complete - t.datetime_start).total_seconds()
            for t in finished
            if t.datetime_complete and t.datetime_start
        ]
        # Configurations that have not started yet (queued or still to be proposed).
        remaining = 0
        if self.n_trials is not None:
            remaining = max(0, self.n_trials - sum(started(lin) for lin in lins))
        if durations and remaining:
            eta = remaining * (sum(durations) / len(durations)) / self.jobs
            table.add_row("ETA", f"{eta / 60:.1f} min for {remaining} more trial(s)")
        table.add_row("elapsed", f"{(time.time() - self.started) / 60:.1f} min")
        return table

    def __enter__(self):
        self.live.start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while not self._stop.wait(2.0):
            try:
                self.live.update(self.render())
            except Exception:  # noqa: BLE001 - a busy storage just skips one refresh
                pass

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.live.update(self.render())
        finally:
            self.live.stop()
            # Rich ends the last frame with a newline only on a terminal; in a log file or a
            # pipe the next line (the sweep's closing line) would be glued to the table.
            if not self.live.console.is_terminal:
                self.live.console.line()
