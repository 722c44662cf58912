"""The thesis's reference numbers, in one place (see ``../shared/THESIS.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fer_sweep.config import TrainConfig

# Trainable parameters per architecture (BN gamma/beta included, BN statistics not):
# exact for the layouts of Tables 5.1-5.3, and the thesis's rounded figure beside them.
PARAMETER_COUNTS: dict[str, int] = {
    "A": 540_807,
    "B": 1_555_911,
    "C": 587_175,
    "D": 589_095,
    "E": 1_325_991,
    "F": 1_916_583,
}
ROUNDED_COUNTS: dict[str, str] = {
    "A": "541K",
    "B": "1,556K",
    "C": "587K",
    "D": "589K",
    "E": "1,326K",
    "F": "1,917K",
}


@dataclass(frozen=True)
class ThesisResult:
    rank: int
    batch_size: int
    recipe: str
    dropout: str
    epochs: int
    private_accuracy: float  # percent, PrivateTest


# Tables 5.6 and 5.7: one run each, so differences under about a point are noise.
TOP3: tuple[ThesisResult, ...] = (
    ThesisResult(1, 64, "Adam, step 1e-3/1e-4/1e-5 (40/20/20 ep)", "0.3 all", 80, 66.55),
    ThesisResult(2, 64, "Adam, step 1e-3/1e-4/1e-5 (40/20/20 ep)", "0.25 conv, 0.5 FC", 80, 65.88),
    ThesisResult(3, 128, "Adam lr 0.1, time decay 0.001", "0.25 conv, 0.5 FC", 100, 65.82),
)


# Config keys that say how long, on what and how a run is kept, not which recipe it is.
NOT_RECIPE = (
    "epochs",
    "subset",
    "seed",
    "precision",
    "checkpoint_every",
    "report_epochs",
    "step_boundaries",
    "step_unit",
)


def recipe_of(config: TrainConfig) -> dict[str, Any]:
    """What makes two configs the same recipe: everything but length, data size and
    bookkeeping; step drops as fractions of the run, however they were written."""
    values = {k: v for k, v in config.model_dump().items() if k not in NOT_RECIPE}
    if config.schedule == "step":
        as_fraction = config.step_unit == "fraction"
        values["step_fractions"] = tuple(
            round(b if as_fraction else b / config.epochs, 6) for b in config.step_boundaries
        )
    return values


@cache
def _recipes() -> dict[int, dict[str, Any]]:
    # Built on first use: the presets live in config, which must not be imported at start-up
    # by the light commands that only need the numbers above.
    from fer_sweep.config import load_config

    return {ref.rank: recipe_of(load_config(preset=f"thesis-top{ref.rank}")) for ref in TOP3}


def reference(config: TrainConfig) -> ThesisResult | None:
    """The thesis's top-3 model whose recipe ``config`` trains (whatever its budget), or None."""
    mine = recipe_of(config)
    return next((TOP3[rank - 1] for rank, recipe in _recipes().items() if recipe == mine), None)


def comparable(config: TrainConfig, epochs_trained: int) -> tuple[ThesisResult | None, str]:
    """The one rule for "comparable with the thesis", used by ``best``, the trial and study
    notes and the reproduction report: the thesis model whose recipe ``config`` trains, when
    the run trained it as many epochs as the thesis did on the whole data (so its PrivateTest
    is the thesis's 3,589 images), with ``""``; else None and why not, in a few words (every
    reason, so that a smoke run says both its images and its epochs)."""
    ref = reference(config)
    if ref is None:
        return None, "not one of the thesis's three recipes"
    why_not = []
    if config.subset:
        why_not.append(f"{config.subset} images per split, not all of them")
    if epochs_trained != ref.epochs:
        why_not.append(f"{epochs_trained} epochs, not the thesis's {ref.epochs}")
    return (None, "; ".join(why_not)) if why_not else (ref, "")
