"""What a sweep (or a reproduction) will cost on this machine, before it starts.

A *pace* is seconds of training per training image for one architecture and batch size on
this machine and Keras backend. It is kept in a small JSON file under the cache folder
(``$FER_SWEEP_CACHE/pace.json``), each entry with when and how it was measured:

- ``N batches of a short fit``: measured here, once, when nothing was cached (a few batches
  of the trainer exactly as a trial builds it, on blank images: the pace does not depend on
  the pixels);
- ``median of N finished epoch(s) of ...``: fed back by every epoch a sweep or a reproduction
  finishes, so later forecasts use the pace of real epochs (validation included).

:func:`forecast` turns the work left (:func:`sweep_work`) into seconds, and
:func:`forecast_line` into the one line every ``sweep``, ``sweep --plan`` and ``reproduce``
prints first.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from fer_sweep.config import TrainConfig
    from fer_sweep.search import Plan

PACE_FILE = "pace.json"
# FER-2013's Training split (the thesis's Table 5.1): what a budget on all images trains on
# when the data itself is not loaded (``sweep --plan``).
FER2013_TRAINING_IMAGES = 28_709
# The short measurement: the first batches trace the train step and fill the input pipeline,
# so only the batches after them are timed.
MEASURE_BATCHES = 6
MEASURE_SKIP = 2


@dataclass(frozen=True)
class Pace:
    """Seconds per training image, with when (UTC, ISO) and how it was measured."""

    seconds_per_image: float
    measured_at: str
    how: str

    def when(self) -> str:
        """``2026-12-04 13:40`` (UTC)."""
        return self.measured_at[:16].replace("T", " ")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


SHORT_FIT = "short fit"
OVERHEADS = "overheads"  # the cache's entry of seconds per trial outside its epochs


def pace_key(backend: str, network: str, batch_size: int, images: int | str) -> str:
    """One machine (host and core count), backend, network (:attr:`TrainConfig.network`:
    the architecture and what changes its size), batch size and training-set
    size (``images``, or :data:`SHORT_FIT` for the measurement): an epoch of 300 images is
    mostly fixed costs (validation, the first batch), so its pace per image is not that of an
    epoch on all 28,709, and each size keeps its own."""
    return (
        f"{platform.node()}|{os.cpu_count()} cores|{backend}|{network}|batch {batch_size}|"
        f"{images if isinstance(images, str) else f'{images} images'}"
    )


class PaceCache:
    """The paces measured on this machine, in ``folder/pace.json``.

    Writes replace the file atomically, so a worker that reads it while another writes never
    sees half a file; two writers at once may lose one update, which only means a slightly
    older pace.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / PACE_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> Pace | None:
        entry = self._read().get(key)
        try:
            return Pace(
                float(entry["seconds_per_image"]), str(entry["measured_at"]), str(entry["how"])
            )
        except (TypeError, KeyError, ValueError):
            return None

    def put(self, key: str, pace: Pace) -> None:
        data = self._read()
        data[key] = {
            "seconds_per_image": pace.seconds_per_image,
            "measured_at": pace.measured_at,
            "how": pace.how,
        }
        self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".pace-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def overhead(self, key: str) -> tuple[float, str] | None:
        """Seconds a trial of ``key`` spends outside its epochs (building, tracking, the final
        evaluation), and what measured them; None when no trial has finished."""
        entry = self._read().get(OVERHEADS, {}).get(key)
        try:
            return float(entry["seconds"]), str(entry["how"])
        except (TypeError, KeyError, ValueError):
            return None

    def record_overhead(self, key: str, seconds: float, what: str) -> None:
        """Feed back the time a finished trial spent outside its epochs."""
        data = self._read()
        data.setdefault(OVERHEADS, {})[key] = {
            "seconds": max(0.0, seconds),
            "how": what,
            "measured_at": now_iso(),
        }
        self._write(data)

    def record_epochs(self, key: str, epoch_seconds: Sequence[float], images: int, what: str):
        """Feed finished epochs back: their median over ``images`` training images each."""
        if not epoch_seconds or images <= 0:
            return
        median = statistics.median(epoch_seconds)
        n = len(epoch_seconds)
        self.put(
            key, Pace(median / images, now_iso(), f"median of {n} finished epoch(s) of {what}")
        )


def measure_pace(config: TrainConfig) -> Pace:
    """A short fit of ``config``'s trainer (:data:`MEASURE_BATCHES` batches, the first
    :data:`MEASURE_SKIP` untimed) on blank images; loads Keras and builds the model."""
    import numpy as np

    from fer_sweep.training import project_fitter

    n = MEASURE_BATCHES * config.batch_size
    images = np.zeros((n, 48, 48), dtype="uint8")
    labels = np.arange(n, dtype="int64") % 7
    fit, _ = project_fitter(config, images, labels, steps_per_epoch=MEASURE_BATCHES)
    rate = fit(MEASURE_BATCHES, MEASURE_SKIP)
    if not math.isfinite(rate) or rate <= 0:
        raise RuntimeError(f"the short fit measured {rate} images/s")
    timed = MEASURE_BATCHES - MEASURE_SKIP - 1  # intervals between the timed batch ends
    return Pace(1.0 / rate, now_iso(), f"{timed} batches of a short fit")


# --- the work left ------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """What is left of one trial: ``epochs`` of ``images`` training images of ``config``,
    over all its ``seeds`` (a sweep file's ``seeds: K`` trains K runs a trial)."""

    config: TrainConfig
    epochs: int
    images: int
    seeds: int = 1


def training_images(total: int, subset: int) -> int:
    """Training images an epoch sees: all ``total``, or the budget's ``subset`` of them."""
    return min(total, subset) if subset else total


def sweep_work(
    plan: Plan, trials: Sequence[FrozenTrial] = (), *, total_images: int, seeds: int = 1
) -> list[Work]:
    """The trials of ``plan`` not yet finished, given a study's ``trials`` (none: a fresh
    study), each with the epochs it still trains over its ``seeds``.

    A configuration whose latest attempt ended (complete, pruned, failed for good) is done; a
    queued resume still trains the epochs after its checkpoint, a running one those after
    its latest reported epoch. Fixed trials (grid points, enqueued ones) are matched by their
    parameters; the rest of ``n_trials`` are sampled from the file's base config.
    """
    from optuna.trial import TrialState

    from fer_sweep.lifecycle._study import (
        STOPPED_AFTER_EPOCH,
        STOPPED_IN_SEED,
        lineages,
        params_of,
        same_point,
    )

    images = training_images(total_images, plan.budget.subset)
    fixed = list(plan.trials)
    left: list[Work] = []
    for lineage in lineages(trials).values():
        first, last = lineage[0], lineage[-1]
        match = next((p for p in fixed if same_point(p.params, params_of(first))), None)
        if match is not None:
            fixed.remove(match)
        if last.state.is_finished():
            continue
        config = match.config if match is not None else plan.base_config()
        done = 0
        if last.state == TrialState.RUNNING:
            # Only seed 0 reports its epochs: a later seed's progress is not known here.
            done = max(last.intermediate_values, default=0)  # epoch numbers
        elif len(lineage) > 1:
            stopped = lineage[-2].user_attrs
            done = int(stopped.get(STOPPED_AFTER_EPOCH, 0) or 0)
            done += config.epochs * int(stopped.get(STOPPED_IN_SEED, 0) or 0)  # seeds before
        left.append(Work(config, max(0, seeds * config.epochs - done), images, seeds))
    unstarted = [Work(p.config, seeds * p.config.epochs, images, seeds) for p in fixed]
    if plan.n_trials is None:  # until the timeout: at least the fixed trials
        return left + unstarted
    # Queued trials are lineages already; the slots left go to the fixed trials first (a
    # smaller n_trials runs only the first of them), then to sampled ones.
    slots = max(0, plan.n_trials - len(lineages(trials)))
    base = plan.base_config()
    left += unstarted[:slots]
    left += [Work(base, seeds * base.epochs, images, seeds)] * max(0, slots - len(unstarted))
    return left


# --- the forecast -------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    """The seconds ``work`` takes over ``jobs`` at the paces found (None: some unknown)."""

    work: tuple[Work, ...]
    paces: dict[str, Pace]  # by architecture
    missing: tuple[str, ...]  # architectures without a pace
    overhead: float  # seconds outside epochs included (a trial's build, tracking, evaluation)
    jobs: int
    backend: str
    seconds: float | None


def forecast(
    work: Iterable[Work],
    cache: PaceCache,
    *,
    backend: str,
    jobs: int = 1,
    measure: Callable[[TrainConfig], Pace] | None = measure_pace,
) -> Forecast:
    """Seconds for ``work`` over ``jobs`` processes: each trial's epochs × images × its
    pace: the pace of finished epochs of that size in ``cache``, else the short fit's there,
    else one measured now with ``measure`` (once per architecture and batch size, then
    cached; None: not measured, the forecast unknown)."""
    work = tuple(work)
    paces: dict[str, Pace] = {}
    by_key: dict[str, Pace | None] = {}
    missing: list[str] = []
    total = overhead = 0.0
    for w in work:
        key = pace_key(backend, w.config.network, w.config.batch_size, w.images)
        if key not in by_key:
            short = pace_key(backend, w.config.network, w.config.batch_size, SHORT_FIT)
            pace = cache.get(key) or cache.get(short)
            if pace is None and measure is not None:
                pace = measure(w.config)
                cache.put(short, pace)
            by_key[key] = pace
            if pace is not None:
                paces.setdefault(w.config.network, pace)
            elif w.config.network not in missing:
                missing.append(w.config.network)
        pace = by_key[key]
        if pace is not None:
            total += w.epochs * w.images * pace.seconds_per_image
        found = cache.overhead(key)
        if found is not None:
            overhead += found[0] * w.seeds  # recorded per run, and a seed is a run
            total += found[0]
    seconds = None if missing else total / max(1, jobs)
    return Forecast(work, paces, tuple(missing), overhead, jobs, backend, seconds)


def sweep_forecast(
    plan: Plan,
    trials: Sequence[FrozenTrial],
    cache_dir: Path,
    *,
    total_images: int,
    jobs: int,
    chosen: bool,
    measure: Callable[[TrainConfig], Pace] | None,
    seeds: int = 1,
) -> tuple[Forecast, str]:
    """The forecast of what ``plan``'s study (its ``trials``, ``seeds`` runs each) has left,
    and its line."""
    from fer_sweep.backend import name

    work = sweep_work(plan, trials, total_images=total_images, seeds=seeds)
    f = forecast(work, PaceCache(cache_dir), backend=name(), jobs=jobs, measure=measure)
    head = budget_reason(plan.budget_name, chosen, plan.spec.budgets)
    return f, forecast_line(head, f)


def duration(seconds: float) -> str:
    """``3 h 20 min``, ``12 min``, ``40 s``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def budget_reason(name: str, chosen: bool, known: Iterable[str]) -> str:
    """``budget quick (default; BUDGET=smoke|quick|thesis to choose)`` or ``(chosen)``."""
    if chosen:
        return f"budget {name} (chosen)"
    return f"budget {name} (default; BUDGET={'|'.join(known)} to choose)"


def forecast_line(head: str, f: Forecast, *, unit: str = "trial") -> str:
    """``HEAD · 6 trials left × 10 epochs · forecast 3 h 20 min on this machine (...)``."""
    epochs = sorted({w.epochs for w in f.work})
    each = (
        (f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]} epochs")
        if epochs
        else "0 epochs"
    )
    count = f"{len(f.work)} {unit}{'s' if len(f.work) != 1 else ''} left × {each}"
    seeds = max((w.seeds for w in f.work), default=1)
    if seeds > 1:
        count += f" ({seeds} seeds each)"
    if not f.work:
        return f"{head} · nothing left to train"
    paces = _paces_text(f.paces)
    where = f"{f.backend}, {os.cpu_count()} cores" + (f"; {paces}" if paces else "")
    if f.overhead:
        where += f"; {duration(f.overhead)} outside epochs, from finished trials"
    jobs = f"over {f.jobs} job{'s' if f.jobs != 1 else ''}"
    if f.seconds is None:
        why = ", ".join(f.missing)
        return (
            f"{head} · {count} · forecast unknown: no pace of {why} on this machine "
            f"({where}) {jobs}"
        )
    return f"{head} · {count} · forecast {duration(f.seconds)} on this machine ({where}) {jobs}"


def _paces_text(paces: dict[str, Pace]) -> str:
    """``pace of C measured 2026-12-04 13:40 UTC, 3 batches of a short fit``; architectures
    measured the same way share one clause (``paces of A, B measured 13:40-13:41 ...``)."""
    by_how: dict[str, list[tuple[str, Pace]]] = {}
    for arch, p in sorted(paces.items()):
        by_how.setdefault(p.how, []).append((arch, p))
    parts = []
    for how, found in by_how.items():
        names = ", ".join(a for a, _ in found)
        times = sorted(p.when() for _, p in found)
        when = times[0] if times[0] == times[-1] else f"{times[0]} - {times[-1][11:]}"
        each = " each" if len(found) > 1 else ""
        parts.append(
            f"pace{'s' if len(found) > 1 else ''} of {names} measured {when} UTC, {how}{each}"
        )
    return "; ".join(parts)


def summary_line(forecast_seconds: float | None, actual_seconds: float) -> str:
    """The end of a sweep: what was forecast beside what it took."""
    shown = "unknown" if forecast_seconds is None else duration(forecast_seconds)
    return f"forecast {shown}, actual {duration(actual_seconds)}"
