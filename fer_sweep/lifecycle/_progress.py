"""A sweep's progress: each trial's inside and after each epoch, and the live view of a study.

:class:`TrialProgress` publishes a running trial's in-epoch progress (batches, images/s) as
trial user attributes and, off a terminal, prints a line per epoch; :class:`StudyView`
draws the study live from its storage; :func:`epoch_end_message` says, on Ctrl-C, when the
running epochs end.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

# Trial user attributes a running trial publishes for the live view and the Ctrl-C message.
EPOCH_PROGRESS = "epoch_progress"  # {epoch, batch, steps, batch_size, images_per_s, at}
EPOCH_SECONDS = "epoch_seconds"  # wall time of each epoch this attempt finished
PUBLISH_EVERY = 5.0  # seconds between two publications of the in-epoch progress


class TrialProgress(keras.callbacks.Callback):
    """A sweep trial's progress: inside an epoch (batches, images/s) every
    :data:`PUBLISH_EVERY` seconds through ``publish``; after each epoch its wall time
    (validation included) through ``epoch_done`` with every epoch time so far, and, with
    ``lines``, one plain line (for a log file or ``nohup``, where no live view draws).

    Like :class:`EpochProgress` it never reads a batch's logs and is ``async_safe``: the
    batch hook only counts (under a lock) and, now and then, hands a small dict on.
    """

    async_safe = True

    def __init__(
        self,
        label: str,
        *,
        epochs: int,
        steps: int,
        batch_size: int,
        publish: Callable[[dict[str, Any]], None],
        epoch_done: Callable[[list[float]], None],
        lines: bool,
        every: float = PUBLISH_EVERY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.label, self.epochs, self.steps, self.batch_size = label, epochs, steps, batch_size
        self.publish, self.epoch_done, self.lines = publish, epoch_done, lines
        self.every, self.clock = every, clock
        self.seconds: list[float] = []
        self._lock = threading.Lock()
        self._epoch = 0
        self._batches = 0
        self._started = 0.0
        self._published = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        with self._lock:
            self._epoch, self._batches = epoch + 1, 0
            self._started = self._published = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        with self._lock:
            self._batches += 1
            now = self.clock()
            if now - self._published < self.every:
                return
            self._published = now
            elapsed = max(now - self._started, 1e-9)
            state = {
                "epoch": self._epoch,
                "batch": self._batches,
                "steps": self.steps,
                "batch_size": self.batch_size,
                "at": now,
                "images_per_s": self._batches * self.batch_size / elapsed,
            }
        self.publish(state)

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.clock() - self._started
        self.seconds.append(seconds)
        self.epoch_done(list(self.seconds))
        if not self.lines:
            return
        logs = logs or {}
        shown = " ".join(
            f"{k} {logs[k]:.4f}"
            for k in ("loss", "accuracy", "val_loss", "val_accuracy")
            if k in logs
        )
        left = (self.epochs - (epoch + 1)) * statistics.median(self.seconds)
        print(
            f"{self.label} epoch {epoch + 1}/{self.epochs}  {shown}  {seconds:.0f} s  "
            f"ETA of the trial {_minutes(left)}",
            flush=True,
        )


def _minutes(seconds: float) -> str:
    from fer_sweep.lifecycle._forecast import duration

    return duration(seconds)


def epoch_in_progress(state: Mapping[str, Any] | None, now: float) -> tuple[str, float] | None:
    """A running trial's published in-epoch progress in words, and the seconds until its
    epoch's last batch (its validation pass comes after), or None if it published nothing."""
    if not state or not state.get("images_per_s"):
        return None
    left_images = max(0, state["steps"] - state["batch"]) * state["batch_size"]
    left = max(0.0, left_images / state["images_per_s"] - (now - state["at"]))
    text = (
        f"batch {state['batch']}/{state['steps']}, {state['images_per_s']:.0f} images/s, "
        f"epoch ends in {_minutes(left)}"
    )
    return text, left


def epoch_end_message(trials: Sequence[Any], now: float | None = None) -> str | None:
    """When the running trials' current epochs end (the latest of them), from what they
    published: ``the epoch ends in about 4 min (trial 3: batch 120/449, ...)``."""
    from optuna.trial import TrialState

    now = time.time() if now is None else now
    found = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            seen = epoch_in_progress(t.user_attrs.get(EPOCH_PROGRESS), now)
            if seen is not None:
                found.append((seen[1], t.number, seen[0]))
    if not found:
        return None
    left, number, text = max(found)
    return f"the current epoch ends in about {_minutes(left)} (trial {number}: {text})"


class StudyView:
    """Live terminal view of a study: trial states, the best so far, the running trials' epochs
    (and where they are inside the current one) and an ETA for the rest of the sweep,
    refreshed from the study's storage.

    The ETA is the epochs left (``epochs_left`` of the study's trials) at the median time of
    the epochs this study's trials have finished, over ``jobs``; until one has, the forecast
    made before the sweep started (``forecast_seconds``) counts down.
    """

    def __init__(
        self,
        study,
        *,
        n_trials: int | None,
        epochs: int,
        jobs: int,
        console=None,
        epochs_left: Callable[[Sequence[Any]], int] | None = None,
        forecast_seconds: float | None = None,
    ) -> None:
        from rich.live import Live

        self.study = study
        self.n_trials = n_trials
        self.epochs = epochs
        self.jobs = jobs
        self.epochs_left = epochs_left
        self.forecast_seconds = forecast_seconds
        self.started = time.time()
        self.live = Live(self.render(), console=console, refresh_per_second=1, transient=False)

    def render(self):
        from optuna.trial import TrialState
        from rich.table import Table

        from fer_sweep.lifecycle._study import lineages, skipped

        trials = self.study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s and not skipped(t) for t in trials) for s in TrialState}
        lins = lineages(trials).values()
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
        now = time.time()
        for t in trials:
            if t.state == TrialState.RUNNING:
                # Reported steps are epoch numbers, also after a resume (not a count).
                done = max(t.intermediate_values, default=0)
                last = t.intermediate_values.get(done)
                shown = "starting" if last is None else f"PublicTest {last:.4f}"
                state = t.user_attrs.get(EPOCH_PROGRESS) or {}
                inside = epoch_in_progress(state, now) if state.get("epoch") == done + 1 else None
                where = f"; epoch {done + 1}: {inside[0]}" if inside else ""
                table.add_row(f"trial {t.number}", f"epoch {done}/{self.epochs}  {shown}{where}")
        eta = self.eta(trials, now)
        if eta is not None:
            table.add_row("ETA", eta)
        table.add_row("elapsed", f"{(time.time() - self.started) / 60:.1f} min")
        return table

    def eta(self, trials, now: float) -> str | None:
        """The time the sweep still needs, from this study's own finished epochs."""
        if self.epochs_left is None:
            return None
        left = self.epochs_left(trials)
        if not left:
            return None
        seconds = [s for t in trials for s in t.user_attrs.get(EPOCH_SECONDS) or ()]
        if seconds:
            pace = statistics.median(seconds)
            return (
                f"{_minutes(left * pace / self.jobs)} for {left} more epoch(s) at this "
                f"sweep's {pace:.0f} s an epoch (median of {len(seconds)})"
            )
        if self.forecast_seconds is not None:
            rest = self.forecast_seconds - (now - self.started)
            return f"{_minutes(rest)} by the forecast (no epoch of this sweep finished yet)"
        return None

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
