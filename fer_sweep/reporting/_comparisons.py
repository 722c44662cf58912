"""Paired comparisons as report tables: arms of per-image correctness in, Markdown out.

The reproduction report and ``report STUDY`` both hand this module named arms (a boolean
``(seeds, images)`` array each, the same images in the same order) and the pairs to compare;
it runs :func:`.stats.compare` on each pair, adjusts the table's p-values together
by Holm, and writes one row per pair. :func:`verdict` is the one rule for reading a
comparison as a claim that A is above B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from fer_sweep.reporting import stats

ALPHA = 0.05  # a Holm-adjusted p below this is a difference the images (and seeds) support

HEAD = (
    "| A | B | A % (95 % CI) | B % (95 % CI) | A - B, points (95 % CI) | images | "
    "A only / B only right | test | p | p, Holm |"
)
RULE = "|---|---|---|---|---|---|---|---|---|---|"

EXPLAIN = (
    "Each row is A against B on the same images. Accuracy intervals: Wilson over the images "
    "for one seed, a bootstrap over seeds and images for several. A - B: the difference in "
    "points with the 95 % interval of a paired bootstrap over the images (seeds resampled too "
    f"when there are several; {stats.RESAMPLES:,} resamples, seeded). p: McNemar's exact test "
    "on the images exactly one of the two classifies right (one seed each), else the "
    "bootstrap's two-sided p, with P(A > B) over seeds; Holm's adjustment is over the rows "
    "of the table."
)


@dataclass(frozen=True)
class Arm:
    """A named model (or configuration over seeds) and its per-image correctness."""

    name: str
    correct: np.ndarray  # (images,) or (seeds, images)


def compare_pairs(pairs: Sequence[tuple[Arm, Arm]]) -> list[stats.Comparison]:
    """Each pair compared, the p-values adjusted together by Holm."""
    done = [stats.compare(a.correct, b.correct, a=a.name, b=b.name) for a, b in pairs]
    adjusted = stats.holm([c.p for c in done])
    return [replace(c, p_holm=q) for c, q in zip(done, adjusted, strict=True)]


def table(pairs: Sequence[tuple[Arm, Arm]]) -> list[str]:
    """The Markdown table of ``pairs`` (header included)."""
    lines = [HEAD, RULE]
    for (a, b), c in zip(pairs, compare_pairs(pairs), strict=True):
        lines.append(row(c, stats.accuracy(a.correct), stats.accuracy(b.correct)))
    return lines


def row(c: stats.Comparison, acc_a: stats.Estimate, acc_b: stats.Estimate) -> str:
    if c.a_only is not None:
        disagree = f"{c.a_only} / {c.b_only}"
    else:
        disagree = f"- (P(A > B) over seeds {c.p_a_beats_b:.2f})"
    seeds = "" if c.seeds == (1, 1) else f" ({c.seeds[0]} and {c.seeds[1]} seeds)"
    return (
        f"| {c.a} | {c.b}{seeds} | {interval(acc_a)} | {interval(acc_b)} | "
        f"{interval(c.difference, signed=True)} | {c.images:,} | {disagree} | {c.test} | "
        f"{pvalue(c.p)} | {pvalue(c.p_holm)} |"
    )


def interval(e: stats.Estimate, *, signed: bool = False) -> str:
    """``e`` in percent (points), two decimals: ``67.32 (65.78 to 68.82)``."""
    spec = "+.2f" if signed else ".2f"
    return f"{100 * e.value:{spec}} ({100 * e.low:{spec}} to {100 * e.high:{spec}})"


def pvalue(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def verdict(c: stats.Comparison, *, alpha: float = ALPHA) -> str:
    """How ``c`` reads as the claim "A is above B": ``holds`` (A above, Holm-adjusted p
    under ``alpha``), ``contradicted`` (B above, likewise) or ``not supported`` (the
    difference is within what the images and seeds leave open)."""
    p = c.p if c.p_holm is None else c.p_holm
    if p < alpha:
        return "holds" if c.difference.value > 0 else "contradicted"
    return "not supported"
