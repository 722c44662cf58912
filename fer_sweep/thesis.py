"""The thesis's reference numbers, in one place (see ``../shared/THESIS.md``)."""

from __future__ import annotations

from dataclasses import dataclass

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
