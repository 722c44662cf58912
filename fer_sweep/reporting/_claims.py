"""The thesis's conclusions that a shipped sweep tests, in one table, and their verdicts.

Each :class:`Claim` names its thesis section, quotes the thesis's own sentence (its list of
conclusions, Section 5.4), the sweep that tests it and the pairs of arms it compares, each
pair ``(above, below)`` in the direction the thesis claims. :func:`judge` reads a study's
configurations (:mod:`fer_sweep.reporting._study_report`) against a claim: every pair tested on the
same PrivateTest images with the final weights (Table 5.7's choice), Holm-adjusted over the
claim's pairs, and one verdict:

- ``holds``: every pair is above in the claimed direction (adjusted p < 0.05);
- ``contradicted``: some pair is significantly the other way;
- ``not supported at this budget``: anything else, and always when the study trained fewer
  epochs than the thesis did for the claim (the verdict then says so, with the budget).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fer_sweep.reporting import _comparisons as comparisons
from fer_sweep.reporting import stats
from fer_sweep.reporting._comparisons import Arm

HOLDS, CONTRADICTED, NOT_SUPPORTED = "holds", "contradicted", "not supported at this budget"
SPLIT, WEIGHTS = "PrivateTest", "final"


@dataclass(frozen=True)
class Claim:
    section: str
    quote: str  # the thesis's sentence, verbatim
    sweep: str  # the file in sweeps/ that tests it
    pairs: tuple[tuple[Mapping[str, str], Mapping[str, str]], ...]  # (above, below) arms

    @property
    def epochs(self) -> int:
        """What the thesis trained its arms for: the sweep's ``thesis`` budget."""
        from fer_sweep.search import load_sweep, make_plan

        return min(t.config.epochs for t in make_plan(load_sweep(self.sweep), "thesis").trials)


def _each(param: str, above: str, below: Sequence[str], **fixed: str):
    return tuple(({param: above, **fixed}, {param: b, **fixed}) for b in below)


_ARCH_SETUPS = (
    "lr 0.1 decay 0.001 (Fig. 5.11)",
    "lr 0.1 no decay (Fig. 5.10)",
    "lr 0.01 decay 0.001 + L2(0.01) on FC",
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "5.3.1",
        "Data Augmentation techniques significantly improves the model’s accuracy.",
        "augmentation",
        _each("augmentation", "all (augment + rescale)", ["none (rescale kept)"]),
    ),
    Claim(
        "5.3.2",
        "Dropout layer improves the overall architecture protecting from overfitting.",
        "dropout_on_off",
        _each("dropout", "on (0.25 conv / 0.5 FC)", ["off"]),
    ),
    Claim(
        "5.3.3",
        "With a momentum rate of 0.95, we can outperform the performance of the "
        "standard default setting of 0.9.",
        "momentum",
        _each("momentum_update", "Nesterov 0.95", ["Nesterov 0.9"]),
    ),
    Claim(
        "5.3.4",
        "By placing the Batch Normalization after the activation function, we "
        "achieve lower loss and slightly higher accuracy.",
        "bn_position",
        _each("bn_position", "after", ["before"], model="Type A + ReLU")
        + _each("bn_position", "after", ["before"], model="Type C + ELU"),
    ),
    Claim(
        "5.3.5",
        "We conclude the predominance of Type C model architecture in any case.",
        "architecture",
        tuple(p for setup in _ARCH_SETUPS for p in _each("arch", "C", "ABDEF", setup=setup)),
    ),
)


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    why: str  # the budget it rests on, or what is missing
    comparisons: tuple[stats.Comparison, ...] = ()


def claims_of(sweep: str) -> list[Claim]:
    return [c for c in CLAIMS if c.sweep == sweep]


def judge(
    claim: Claim, configurations: Sequence, *, budget: str, epochs: int, subset: int = 0
) -> Verdict:
    """The verdict on ``claim`` from a study's configurations (each with ``params``, a
    ``label`` and ``correct(split, weights)``, ``(seeds, images)``), trained ``epochs``
    epochs at ``budget`` on ``subset`` images per split (0: all)."""
    pairs, missing = [], []
    for above, below in claim.pairs:
        a, b = _find(configurations, above), _find(configurations, below)
        if a is None or b is None:
            missing.append(_words(above if a is None else below))
            continue
        pairs.append(
            (
                Arm(a.label, a.correct(SPLIT, WEIGHTS)),
                Arm(b.label, b.correct(SPLIT, WEIGHTS)),
            )
        )
    if missing:
        return Verdict(
            claim,
            NOT_SUPPORTED,
            f"the study has no finished trial of {'; '.join(sorted(set(missing)))}",
        )
    done = tuple(comparisons.compare_pairs(pairs))
    words = [comparisons.verdict(c) for c in done]
    images = f" on {subset} images per split" if subset else ""
    rests = f"budget {budget}, {epochs} epochs{images}, {_seeds_per_arm(pairs)} per arm"
    if subset:
        return Verdict(
            claim,
            NOT_SUPPORTED,
            f"{rests}: a subset, not the thesis's whole dataset, so no verdict on the claim",
            done,
        )
    if epochs < claim.epochs:
        return Verdict(
            claim,
            NOT_SUPPORTED,
            f"{rests}: shorter than the thesis's {claim.epochs} epochs, so no verdict on the claim",
            done,
        )
    if "contradicted" in words:
        return Verdict(claim, CONTRADICTED, rests, done)
    if all(w == "holds" for w in words):
        return Verdict(claim, HOLDS, rests, done)
    return Verdict(claim, NOT_SUPPORTED, rests, done)


def _seeds_per_arm(pairs) -> str:
    """``one seed`` / ``3 seeds`` / ``1 to 3 seeds``: the arms' seeds, in words."""
    counts = sorted({a.correct.shape[0] if a.correct.ndim == 2 else 1 for p in pairs for a in p})
    if counts == [1]:
        return "one seed"
    many = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f"{many} seeds"


def _find(configurations: Sequence, arm: Mapping[str, str]):
    for c in configurations:
        if all(str(c.params.get(k)) == v for k, v in arm.items()):
            return c
    return None


def _words(arm: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in arm.items())


# --- results/thesis-claims.md -------------------------------------------------------------

CLAIMS_FILE = "thesis-claims.md"
TOP3_CLAIM = (
    "5.3.8",
    "The top 3 (Table 5.7): thesis-top1 66.55 % > thesis-top2 65.88 % > "
    "thesis-top3 65.82 % PrivateTest.",
)


def forecast_hours(claim: Claim, seconds_per_epoch: float) -> float:
    """Hours to train every arm of ``claim``'s sweep at the thesis's budget, at
    ``seconds_per_epoch`` for an epoch over all 28,709 training images (scaled by a trial's
    subset)."""
    from fer_sweep.search import load_sweep, make_plan

    plan = make_plan(load_sweep(claim.sweep), "thesis")
    share = [min(1.0, (t.config.subset or 28_709) / 28_709) for t in plan.trials]
    epochs = [t.config.epochs for t in plan.trials]
    return sum(e * s for e, s in zip(epochs, share, strict=True)) * seconds_per_epoch / 3600


def claims_markdown(
    verdicts: Mapping[str, Verdict | None],
    *,
    seconds_per_epoch: float | None,
    pace_source: str,
    top3: str,
) -> str:
    """``results/thesis-claims.md``: every claim with its verdict from the thesis-budget study
    (``verdicts[section]``), or "not run at the thesis's budget" with the time it would take."""
    lines = [
        "# Which of the thesis's conclusions hold",
        "",
        "Written by `python -m fer_sweep claims` from the thesis-budget studies "
        "(`SWEEP-thesis`) in the store and the reproduction's run folders; the table of "
        "conclusions is `fer_sweep/reporting/_claims.py`. A verdict compares the arms on the same "
        "PrivateTest images (final weights): McNemar's exact test per pair, Holm-adjusted "
        "over the claim's pairs.",
        "",
        "| section | the thesis says | sweep | verdict | rests on |",
        "|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        v = verdicts.get(claim.section)
        if v is not None:
            lines.append(
                f"| {claim.section} | {claim.quote} | `{claim.sweep}` | {v.verdict} | {v.why} |"
            )
            continue
        if seconds_per_epoch:
            hours = forecast_hours(claim, seconds_per_epoch)
            when = f"about {hours:.0f} h of training here ({pace_source})"
        else:
            when = "no measured pace to forecast from"
        lines.append(
            f"| {claim.section} | {claim.quote} | `{claim.sweep}` | not run at the "
            f"thesis's budget | `sweep {claim.sweep} --budget thesis`: {when} |"
        )
    lines.append(f"| {TOP3_CLAIM[0]} | {TOP3_CLAIM[1]} | `reproduce` | {top3} |")
    return "\n".join([*lines, ""])
