"""The statistics of paired comparisons, fixed against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fer_sweep.errors import UserError
from fer_sweep.reporting import stats


def _pairs(a_only: int, b_only: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image correctness of two models with the given counts of each kind of image."""
    a = [True] * a_only + [False] * b_only + [True] * both + [False] * neither
    b = [False] * a_only + [True] * b_only + [True] * both + [False] * neither
    return np.array(a), np.array(b)


def test_mcnemar_exact_p_is_the_two_sided_binomial_tail_by_hand():
    a, b = _pairs(a_only=8, b_only=2, both=25, neither=5)
    # 10 discordant images, 2 go b's way: p = 2 * P(X <= 2), X ~ Binomial(10, 1/2)
    #   = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024 = 0.109375.
    assert stats.mcnemar_exact(a, b) == (8, 2, pytest.approx(0.109375, abs=1e-12))
    assert stats.mcnemar_exact(b, a) == (2, 8, pytest.approx(0.109375, abs=1e-12))
    # All 5 discordant images one way: 2 * (1/2)^5 = 0.0625.
    a, b = _pairs(a_only=0, b_only=5, both=10, neither=3)
    assert stats.mcnemar_exact(a, b)[2] == pytest.approx(0.0625, abs=1e-12)
    # 3 against 3 is as even as it gets: p = 1.
    a, b = _pairs(a_only=3, b_only=3, both=4, neither=0)
    assert stats.mcnemar_exact(a, b)[2] == pytest.approx(1.0)
    # No discordant image: nothing tells the two apart.
    assert stats.mcnemar_exact(a, a) == (0, 0, 1.0)


def test_wilson_interval_matches_the_formula():
    k, n, z = 67, 100, 1.959963984540054  # z: the 97.5 % normal quantile
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    est = stats.accuracy(np.array([True] * k + [False] * (n - k)))
    assert est.value == pytest.approx(0.67)
    assert (est.low, est.high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert est.method.startswith("Wilson")


def _exact_bootstrap_quantiles(plus: int, minus: int, n: int) -> tuple[float, float]:
    """The 2.5 % and 97.5 % quantiles of the exact bootstrap distribution of the mean of a
    per-image difference with ``plus`` images at +1, ``minus`` at -1 and the rest 0: a
    resample's counts of +1 and -1 images are multinomial, its mean (k+ - k-) / n."""
    p_plus, p_minus, p_zero = plus / n, minus / n, (n - plus - minus) / n
    mass: dict[int, float] = {}
    for kp in range(n + 1):
        for km in range(n - kp + 1):
            kz = n - kp - km
            pmf = (
                math.factorial(n)
                / (math.factorial(kp) * math.factorial(km) * math.factorial(kz))
                * p_plus**kp
                * p_minus**km
                * p_zero**kz
            )
            mass[kp - km] = mass.get(kp - km, 0.0) + pmf
    values = sorted(mass)
    cdf = np.cumsum([mass[v] for v in values])
    low = values[int(np.searchsorted(cdf, 0.025))]
    high = values[int(np.searchsorted(cdf, 0.975))]
    return low / n, high / n


def test_paired_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    # 30 images: 7 only a gets right, 3 only b, 20 alike; a - b = 4/30.
    a, b = _pairs(a_only=7, b_only=3, both=14, neither=6)
    low, high = _exact_bootstrap_quantiles(7, 3, 30)  # -1/30 and 9/30, worked out in full
    est = stats.paired_bootstrap(a, b)
    assert est.value == pytest.approx(4 / 30)
    # The Monte Carlo percentiles land on the exact quantiles, give or take one step of the
    # distribution's lattice (1/30) where a quantile sits on a jump of its CDF.
    step = 1 / 30 + 1e-9
    assert abs(est.low - low) <= step and abs(est.high - high) <= step
    # The same numbers again: the resampling is seeded.
    assert stats.paired_bootstrap(a, b) == est


def test_seeds_and_images_bootstrap_with_one_seed_each_is_the_paired_bootstrap():
    a, b = _pairs(a_only=7, b_only=3, both=14, neither=6)
    low, high = _exact_bootstrap_quantiles(7, 3, 30)
    est, p = stats.seeds_and_images_bootstrap(a, b)
    assert est.value == pytest.approx(4 / 30)
    step = 1 / 30 + 1e-9
    assert abs(est.low - low) <= step and abs(est.high - high) <= step
    assert 0.0 < p < 1.0


def test_seeds_and_images_bootstrap_counts_the_spread_between_seeds():
    rng = np.random.default_rng(1)
    n = 400
    truth = rng.random(n) < 0.65
    # Three seeds of one configuration that disagree on a fifth of the images each.
    seeds = np.array([np.where(rng.random(n) < 0.2, ~truth, truth) for _ in range(3)])
    several = stats.accuracy(seeds)
    assert several.value == pytest.approx(seeds.mean())
    assert several.low < several.value < several.high
    assert several.method == "bootstrap over seeds and images"
    # The arm against itself: no difference, but each side's seeds are drawn on their own,
    # so the interval keeps the seeds' spread around 0 and the test finds nothing.
    same, p = stats.seeds_and_images_bootstrap(seeds, seeds)
    assert same.value == 0.0 and same.low < 0 < same.high and p > 0.5
    # Three copies of one seed have no spread between seeds: only the images' is left, the
    # paired bootstrap's interval of that seed against itself, which is 0.
    copies, _ = stats.seeds_and_images_bootstrap(np.stack([seeds[0]] * 3), seeds[0])
    assert (copies.low, copies.high) == (0.0, 0.0)


def test_p_a_beats_b_counts_ties_half():
    # 0.70 beats two of b, 0.71 beats two and ties one, 0.72 beats all three: 7.5 of 9 pairs.
    assert stats.p_a_beats_b([0.70, 0.71, 0.72], [0.60, 0.65, 0.71]) == pytest.approx(7.5 / 9)
    assert stats.p_a_beats_b([0.5], [0.6, 0.7]) == 0.0


def test_holm_adjustment_by_hand():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone
    # 0.02, 0.03, 0.06, 0.06; back in the order given.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_compare_picks_mcnemar_for_one_seed_and_the_bootstrap_for_several():
    a, b = _pairs(a_only=8, b_only=2, both=25, neither=5)
    one = stats.compare(a, b, a="final", b="best")
    assert (one.test, one.a_only, one.b_only, one.seeds) == ("McNemar exact", 8, 2, (1, 1))
    assert one.p == pytest.approx(0.109375)
    assert one.difference.value == pytest.approx(6 / 40)
    assert one.p_a_beats_b is None
    several = stats.compare(np.stack([a, a]), np.stack([b, a]))
    assert several.test == "bootstrap over seeds and images" and several.seeds == (2, 2)
    assert several.p_a_beats_b == pytest.approx(0.75)  # a's two seeds vs b's: 1 + 1 + .5 + .5
    assert several.a_only is None


def test_compare_all_adjusts_every_pair_by_holm():
    a, b = _pairs(a_only=8, b_only=2, both=25, neither=5)
    c = a.copy()
    c[:3] = False  # c: a with three of a's own images wrong
    out = stats.compare_all({"a": a, "b": b, "c": c})
    assert [(x.a, x.b) for x in out] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [x.p_holm for x in out] == pytest.approx(stats.holm([x.p for x in out]))


def test_arms_scored_on_different_images_are_a_user_error():
    with pytest.raises(UserError, match="40 and 39 images"):
        stats.compare(np.ones(40, bool), np.ones(39, bool))
