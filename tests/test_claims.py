"""The thesis's conclusions as claims, and the one rule that turns comparisons into verdicts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from fer_sweep.reporting import CLAIMS, claims_markdown
from fer_sweep.reporting._claims import CONTRADICTED, HOLDS, NOT_SUPPORTED, claims_of, judge


class _Correct:
    def __init__(self, right: np.ndarray) -> None:
        self.right = right

    def correct(self, split, variant):
        assert (split, variant) == ("PrivateTest", "final")
        return self.right


def _config(n_right: int, n: int = 400, **params):
    label = ", ".join(f"{k}={v}" for k, v in params.items())
    right = _Correct(np.arange(n) < n_right)
    return SimpleNamespace(params=params, label=label, predictions=right, correct=right.correct)


MOMENTUM = claims_of("momentum")[0]


def test_every_claim_names_a_shipped_sweep_and_its_arms():
    from fer_sweep.search import load_sweep

    for claim in CLAIMS:
        spec = load_sweep(claim.sweep)
        for above, below in claim.pairs:
            for arm in (above, below):
                assert set(arm) <= set(spec.params), (claim.section, arm)


def test_a_clear_difference_at_the_thesis_length_holds_or_contradicts():
    better = [
        _config(300, momentum_update="Nesterov 0.95"),
        _config(240, momentum_update="Nesterov 0.9"),
    ]
    v = judge(MOMENTUM, better, budget="thesis", epochs=100)
    assert v.verdict == HOLDS and v.comparisons[0].difference.value == 0.15
    assert v.why == "budget thesis, 100 epochs, one seed per arm"
    worse = [
        _config(240, momentum_update="Nesterov 0.95"),
        _config(300, momentum_update="Nesterov 0.9"),
    ]
    assert judge(MOMENTUM, worse, budget="thesis", epochs=100).verdict == CONTRADICTED
    close = [
        _config(241, momentum_update="Nesterov 0.95"),
        _config(240, momentum_update="Nesterov 0.9"),
    ]
    assert judge(MOMENTUM, close, budget="thesis", epochs=100).verdict == NOT_SUPPORTED


def test_a_short_budget_never_gives_a_verdict_and_says_why():
    better = [
        _config(300, momentum_update="Nesterov 0.95"),
        _config(240, momentum_update="Nesterov 0.9"),
    ]
    v = judge(MOMENTUM, better, budget="quick", epochs=10)
    assert v.verdict == NOT_SUPPORTED and len(v.comparisons) == 1
    assert "10 epochs" in v.why and "shorter than the thesis's 100 epochs" in v.why
    v = judge(MOMENTUM, better, budget="slice", epochs=100, subset=7000)
    assert v.verdict == NOT_SUPPORTED and "7000 images per split" in v.why


def test_an_arm_the_study_lacks_is_named():
    v = judge(
        MOMENTUM, [_config(300, momentum_update="Nesterov 0.95")], budget="thesis", epochs=100
    )
    assert v.verdict == NOT_SUPPORTED
    assert v.why == "the study has no finished trial of momentum_update=Nesterov 0.9"


def test_every_pair_of_a_claim_must_hold():
    bn = claims_of("bn_position")[0]
    configs = [
        _config(300, model="Type A + ReLU", bn_position="after"),
        _config(200, model="Type A + ReLU", bn_position="before"),
        _config(250, model="Type C + ELU", bn_position="after"),
        _config(250, model="Type C + ELU", bn_position="before"),
    ]
    v = judge(bn, configs, budget="thesis", epochs=100)
    assert [c.a for c in v.comparisons] == [
        "model=Type A + ReLU, bn_position=after",
        "model=Type C + ELU, bn_position=after",
    ]
    assert v.verdict == NOT_SUPPORTED  # Type A's holds, Type C's shows nothing


def test_the_claims_file_forecasts_what_has_not_run():
    text = claims_markdown(
        {},
        seconds_per_epoch=500.0,
        pace_source="at 500 s an epoch",
        top3="not run at the thesis's budget | -",
    )
    # momentum: 4 arms of 100 epochs on all images at 500 s an epoch = 55.6 h.
    assert (
        "| 5.3.3 | With a momentum rate of 0.95, we can outperform the performance of the "
        "standard default setting of 0.9. | `momentum` | not run at the thesis's budget | "
        "`sweep momentum --budget thesis`: about 56 h of training here (at 500 s an "
        "epoch) |"
    ) in text
    assert "| 5.3.8 |" in text and text.count("not run at the thesis's budget") == 6
