"""How sure a comparison of models scored on the same test images is: numpy and scipy only.

Every input is per-image correctness: a boolean array ``(images,)`` for one seed, or
``(seeds, images)`` for several seeds of one configuration, its columns the same images in
the same order for every arm compared (:mod:`fer_sweep.training.predictions` checks that before it
hands arrays here). Accuracies and differences are fractions; reports print them in percent
and points.

- :func:`accuracy`: one seed, the Wilson score interval over images (``scipy.stats.binomtest``);
  several seeds, a percentile interval from a bootstrap that resamples seeds and images
  (:func:`seeds_and_images_bootstrap`).
- :func:`compare`: the one rule for A against B. One seed each: McNemar's exact test (the
  two-sided binomial test on the images where exactly one of the two is right) and a
  paired bootstrap over images of the difference (``scipy.stats.bootstrap``, percentile).
  More seeds: the seeds-and-images bootstrap of the difference of mean accuracies, its
  two-sided bootstrap p, and P(A > B): the chance that a seed of A beats a seed of B
  (Mann-Whitney U over the seeds' accuracies, ties counting half).
- :func:`compare_all`: every pair of several arms, with Holm's adjustment of their p-values.

Resampling is seeded (``seed=0``), so a report written twice says the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
from scipy import stats as _scipy

from fer_sweep.errors import UserError

CONFIDENCE = 0.95
RESAMPLES = 10_000
SEED = 0
_CHUNK = 500  # bootstrap resamples drawn at once (a chunk holds CHUNK x images weights)


@dataclass(frozen=True)
class Estimate:
    """A value with its ``confidence`` interval ``[low, high]`` and how that was computed."""

    value: float
    low: float
    high: float
    method: str


@dataclass(frozen=True)
class Comparison:
    """Arm ``a`` against arm ``b`` on the same images; ``difference`` is accuracy a - b."""

    a: str
    b: str
    difference: Estimate
    p: float  # two-sided, of the test named in ``test``
    test: str
    seeds: tuple[int, int]  # seeds of a and of b
    images: int
    a_only: int | None = None  # one seed each: images a classifies right and b wrong
    b_only: int | None = None  # ... and the other way round
    p_a_beats_b: float | None = None  # several seeds: P(a seed of a beats a seed of b)
    p_holm: float | None = None  # p after Holm's adjustment over the comparisons made together


def _as_seeds(correct, name: str = "correct") -> np.ndarray:
    """``correct`` as a boolean ``(seeds, images)`` array (one row for a 1-D input)."""
    arr = np.asarray(correct)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected (images,) or (seeds, images), got {arr.shape}")
    return arr.astype(bool)


def wilson(successes: int, n: int, *, confidence: float = CONFIDENCE) -> Estimate:
    """``successes / n`` with the Wilson score interval."""
    ci = _scipy.binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return Estimate(successes / n, float(ci.low), float(ci.high), "Wilson score over images")


def accuracy(
    correct, *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES, seed: int = SEED
) -> Estimate:
    """Accuracy with its interval: over images (Wilson) for one seed, over seeds and images
    (bootstrap) for several; the value is then the mean of the seeds' accuracies."""
    arr = _as_seeds(correct)
    if arr.shape[0] == 1:
        return wilson(int(arr.sum()), arr.shape[1], confidence=confidence)
    draws = _two_level([arr], resamples=resamples, seed=seed)[:, 0]
    low, high = _percentile(draws, confidence)
    return Estimate(float(arr.mean()), low, high, "bootstrap over seeds and images")


def mcnemar_exact(a_correct, b_correct) -> tuple[int, int, float]:
    """McNemar's exact test: ``(a_only, b_only, p)``, p the two-sided binomial test of
    ``a_only`` out of the ``a_only + b_only`` discordant images at 1/2 (1.0 when none)."""
    a, b = _pair(a_correct, b_correct)
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    if a_only + b_only == 0:
        return a_only, b_only, 1.0
    return a_only, b_only, float(_scipy.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def paired_bootstrap(
    a_correct,
    b_correct,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """Accuracy of a minus b with the percentile interval of a bootstrap over images (the
    same resampled images for both: ``scipy.stats.bootstrap`` of the mean per-image
    difference)."""
    a, b = _pair(a_correct, b_correct)
    d = a.astype(np.int8) - b.astype(np.int8)
    value = float(d.mean())
    if np.all(d == d[0]):  # every resample has the same mean: no spread to estimate
        return Estimate(value, value, value, "paired bootstrap over images")
    res = _scipy.bootstrap(
        (d,),
        np.mean,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        batch=_CHUNK,
        rng=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Estimate(value, float(ci.low), float(ci.high), "paired bootstrap over images")


def seeds_and_images_bootstrap(
    a_correct,
    b_correct,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[Estimate, float]:
    """Mean accuracy over a's seeds minus b's, its percentile interval and two-sided
    bootstrap p, from resamples that draw each arm's seeds with replacement (stratified:
    within the arm) and one draw of images shared by both arms (paired over images)."""
    a, b = _as_seeds(a_correct, "a"), _as_seeds(b_correct, "b")
    if a.shape[1] != b.shape[1]:
        raise UserError(f"the two arms were scored on {a.shape[1]} and {b.shape[1]} images")
    draws = _two_level([a, b], resamples=resamples, seed=seed)
    diff = draws[:, 0] - draws[:, 1]
    low, high = _percentile(diff, confidence)
    n = len(diff)
    p = min(1.0, 2 * min(np.sum(diff <= 0) + 1, np.sum(diff >= 0) + 1) / (n + 1))
    value = float(a.mean() - b.mean())
    return Estimate(value, low, high, "bootstrap over seeds and images"), float(p)


def p_a_beats_b(a_accuracies: Sequence[float], b_accuracies: Sequence[float]) -> float:
    """P(a seed of a scores above a seed of b), ties counting half: Mann-Whitney's U over
    ``len(a) * len(b)``."""
    u = _scipy.mannwhitneyu(a_accuracies, b_accuracies, alternative="two-sided").statistic
    return float(u) / (len(a_accuracies) * len(b_accuracies))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment, in the order given: the i-th smallest p times
    ``m - i + 1``, kept at least as large as the one before and at most 1."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()


def compare(
    a_correct,
    b_correct,
    *,
    a: str = "A",
    b: str = "B",
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Comparison:
    """Arm ``a`` against arm ``b`` on the same images (see the module's rule)."""
    ra, rb = _as_seeds(a_correct, a), _as_seeds(b_correct, b)
    if ra.shape[1] != rb.shape[1]:
        raise UserError(f"{a} and {b} were scored on {ra.shape[1]} and {rb.shape[1]} images")
    opts = {"confidence": confidence, "resamples": resamples, "seed": seed}
    seeds = (ra.shape[0], rb.shape[0])
    if seeds == (1, 1):
        a_only, b_only, p = mcnemar_exact(ra[0], rb[0])
        diff = paired_bootstrap(ra[0], rb[0], **opts)
        return Comparison(a, b, diff, p, "McNemar exact", seeds, ra.shape[1], a_only, b_only)
    diff, p = seeds_and_images_bootstrap(ra, rb, **opts)
    beats = p_a_beats_b(ra.mean(axis=1), rb.mean(axis=1))
    return Comparison(
        a, b, diff, p, "bootstrap over seeds and images", seeds, ra.shape[1], p_a_beats_b=beats
    )


def compare_all(arms: Mapping[str, object], **options) -> list[Comparison]:
    """Every pair of ``arms`` (name -> correctness), in the mapping's order, Holm-adjusted."""
    pairs = [compare(arms[x], arms[y], a=x, b=y, **options) for x, y in combinations(arms, 2)]
    return [replace(c, p_holm=q) for c, q in zip(pairs, holm([c.p for c in pairs]), strict=True)]


def _pair(a_correct, b_correct) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a_correct).astype(bool), np.asarray(b_correct).astype(bool)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise UserError(
            f"paired correctness needs two equal 1-D arrays, got {a.shape} and {b.shape}"
        )
    return a, b


def _two_level(arms: list[np.ndarray], *, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, arms)`` mean accuracies, each resample drawing every arm's seeds with
    replacement and one set of images (with replacement) for all arms."""
    rng = np.random.default_rng(seed)
    n = arms[0].shape[1]
    out = np.empty((resamples, len(arms)))
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        images = rng.multinomial(n, np.full(n, 1 / n), size=k) / n  # (k, n) image weights
        for j, arm in enumerate(arms):
            s = arm.shape[0]
            seeds = rng.multinomial(s, np.full(s, 1 / s), size=k) / s  # (k, s) seed weights
            per_image = seeds @ arm.astype(float)  # (k, n): each image's resampled accuracy
            out[start : start + k, j] = np.einsum("kn,kn->k", per_image, images)
    return out


def _percentile(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)
