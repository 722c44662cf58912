"""The validated training config: every knob of the thesis's Section 5.2, and the presets.

One :class:`TrainConfig` describes one training run completely. It is what a sweep trial
resolves to, what ``fer_sweep train --config`` reads, what MLflow logs as params, and what a
run can be rebuilt from (``TrainConfig(**params)`` round-trips).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fer_sweep.config._messages import validation_message
from fer_sweep.errors import UserError


class TrainConfig(BaseModel):
    """One training run, in the thesis's words. Unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Architecture (Tables 5.1-5.3; resnet18 and the widths go beyond the thesis)
    arch: Literal["A", "B", "C", "D", "E", "F", "resnet18"] = "C"
    activation: Literal["relu", "elu"] = "elu"
    bn_position: Literal["after", "before", "none"] = "after"
    conv_dropout: float = Field(0.25, ge=0.0, lt=1.0)
    fc_dropout: float = Field(0.5, ge=0.0, lt=1.0)
    # pytorch (beyond the thesis): PyTorch's default for convs and linears (the published
    # recipes' code), uniform with variance 1 / (3 fan_in).
    initializer: Literal["he_normal", "glorot_normal", "pytorch"] = "he_normal"
    fc_l2: float = Field(0.0, ge=0.0)
    # Beyond the thesis. ``width`` multiplies every conv's channels (VGG A-F: Table 5.1's
    # counts; resnet18: its 64-128-256-512 stages); ``fc_units`` replaces the architecture's
    # hidden FC widths (empty: Table 5.2's); ``fc_bn`` drops the BN of the hidden FCs.
    width: float = Field(1.0, gt=0.0, le=8.0)
    fc_units: tuple[int, ...] = ()
    fc_bn: bool = True
    # BN's moving averages keep this much of the old value each step: Keras's 0.99 (the
    # thesis); PyTorch's momentum 0.1 is 0.9 here.
    bn_momentum: float = Field(0.99, gt=0.0, lt=1.0)
    # The network sees the centre crop x crop pixels of each 48 px image (0: all of them);
    # training shifts the image first (crop_padding, translate), so it sees random crops,
    # and five- or ten-crop test-time averaging read the corners too.
    crop: int = Field(0, ge=0, le=48)

    # Optimizer
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    epsilon: float = Field(1e-8, gt=0.0)
    # Beyond the thesis, on every trainable variable (kernels, biases, BN's gamma and beta).
    # l2: PyTorch's SGD(weight_decay=w): w * theta joins the gradient (momentum carries it),
    # as a loss term w/2 * ||theta||^2. decoupled: Keras's (AdamW/SGDW) weight_decay:
    # theta -= lr * w * theta after each step, outside the gradient.
    weight_decay: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay_mode: Literal["l2", "decoupled"] = "l2"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    # Learning-rate schedule
    schedule: Literal["constant", "time_decay", "step", "reduce_on_plateau", "cosine"] = "step"
    decay: float = Field(1e-3, ge=0.0)  # time_decay: lr0 / (1 + decay * t)
    # What t counts. Keras 2's `decay=` optimizer argument, which the thesis used, counts
    # updates (batches); the thesis's formula in 5.3.6 writes epochs. Updates is the default.
    decay_unit: Literal["iteration", "epoch"] = "iteration"
    step_boundaries: tuple[float, ...] = (0.5, 0.75)  # step: where the rate drops
    step_unit: Literal["fraction", "epoch"] = "fraction"  # ...as fractions of the run or epochs
    step_factor: float = Field(0.1, gt=0.0, lt=1.0)  # step and reduce_on_plateau: lr *= factor
    plateau_patience: int = Field(5, ge=1)
    min_lr: float = Field(0.0, ge=0.0)  # floor for reduce_on_plateau and cosine
    # Beyond the thesis: what reduce_on_plateau watches on PublicTest, and a linear warmup
    # from 0 to lr over the first epochs of a cosine schedule.
    plateau_monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    warmup_epochs: int = Field(0, ge=0)

    # Training loop
    batch_size: int = Field(64, ge=1, le=4096)
    epochs: int = Field(80, ge=1, le=1000)
    seed: int = Field(0, ge=0)
    precision: Literal["float32", "mixed_bfloat16"] = "float32"
    checkpoint_every: int = Field(5, ge=1)
    # Epochs after which PrivateTest is evaluated for the report (Section 5.3.1 reports "the
    # end of the 90th epoch"); never used to select anything.
    report_epochs: tuple[int, ...] = ()

    # Data and augmentation (training split only)
    subset: int = Field(0, ge=0)  # images per split, class proportions kept; 0 = all
    # Which images a subset keeps; None: those of ``seed`` (what every run before this field
    # drew). A configuration's further seeds keep their first seed's (see ``for_seed``), so
    # they differ in initial weights, batch order and augmentation only, and their test
    # predictions pair image by image.
    subset_seed: int | None = Field(None, ge=0)
    rescale: bool = True  # x / 255
    augment: bool = True
    rotation: float = Field(10.0, ge=0.0, le=180.0)  # degrees, +-
    zoom: float = Field(0.1, ge=0.0, lt=1.0)  # +-
    hflip: bool = True
    fill_mode: Literal["nearest", "constant", "reflect", "wrap"] = "nearest"
    # Beyond the thesis, all drawn on the host from (seed, epoch) like the rest. Shifts:
    # up to +-translate of the size per axis, and whole pixels up to +-crop_padding (a random
    # crop of the padded image when crop is set). erasing: the probability that an image
    # gets one random rectangle erased (scale 2-33 % of the area, aspect 0.3-3.3, black;
    # torchvision's RandomErasing). mixup / cutmix: a batch's images mixed with a shuffle of
    # it, the weights (and a cutmix box) from Beta(alpha, alpha), the labels mixed alike;
    # with both, each batch is one or the other with probability 1/2.
    translate: float = Field(0.0, ge=0.0, lt=1.0)
    crop_padding: int = Field(0, ge=0, le=24)
    erasing: float = Field(0.0, ge=0.0, le=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0, le=10.0)
    cutmix_alpha: float = Field(0.0, ge=0.0, le=10.0)

    @field_validator("step_boundaries", "report_epochs", "fc_units", mode="before")
    @classmethod
    def _from_params(cls, value: Any) -> Any:
        # MLflow params are strings: a list comes back as "0.5,0.75" ("" for an empty one).
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0.0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0")
        if self.warmup_epochs and self.schedule != "cosine":
            raise ValueError("warmup_epochs needs schedule cosine")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs {self.warmup_epochs} leaves nothing of a {self.epochs}-epoch run"
            )
        if self.arch == "resnet18":
            self._check_resnet()
        if any(u < 1 for u in self.fc_units):
            raise ValueError(f"fc_units {list(self.fc_units)} must be whole numbers >= 1")
        if self.crop and self.crop < 16:
            raise ValueError(f"crop {self.crop}: the networks need at least 16 px (or 0: all)")
        if self.schedule == "step":
            self._check_step_boundaries()
        r = self.report_epochs
        if any(e < 1 for e in r) or list(r) != sorted(set(r)):
            raise ValueError(f"report_epochs {list(r)} must be epochs >= 1, strictly increasing")
        if r and r[-1] > self.epochs:
            raise ValueError(f"report_epochs {list(r)} go past the run's {self.epochs} epochs")
        return self

    def _check_resnet(self) -> None:
        """resnet18 is conv-BN-activation blocks, global pooling and one FC: the VGG knobs
        that would not change it are refused, not ignored."""
        if self.bn_position != "before":
            raise ValueError("arch resnet18 puts BN before the activation: bn_position before")
        if self.conv_dropout or self.fc_units:
            raise ValueError("arch resnet18 has no conv dropout and no hidden FCs")

    def _check_step_boundaries(self) -> None:
        b = self.step_boundaries
        if not b:
            raise ValueError("schedule step needs at least one step_boundaries value")
        if any(x <= 0 for x in b) or list(b) != sorted(set(b)):
            raise ValueError(f"step_boundaries {list(b)} must be positive and strictly increasing")
        if self.step_unit == "fraction":
            if b[-1] >= 1.0:
                raise ValueError(f"step_boundaries {list(b)} as fractions must lie in (0, 1)")
            return
        if any(x != int(x) for x in b):
            raise ValueError(f"step_boundaries {list(b)} in epochs must be whole epochs")
        if b[-1] >= self.epochs:
            raise ValueError(
                f"step_boundaries {list(b)}: a drop after epoch {int(b[-1])} never happens in a "
                f"{self.epochs}-epoch run"
            )

    def step_epochs(self) -> list[int] | None:
        """Epochs after which a step schedule drops the rate, or None for a run too short to
        give every step a whole epoch (its drops fall within epochs; see schedules.py).

        Epoch boundaries are used as given. A fraction ``f`` means after epoch
        ``round(f * epochs)``, moved the least needed so that every step keeps at least one
        epoch: 0.5 / 0.75 of 80 epochs is 40 / 60, of 10 is 5 / 8, of 3 is 1 / 2.
        """
        if self.step_unit == "epoch":
            return [int(b) for b in self.step_boundaries]
        if self.epochs <= len(self.step_boundaries):
            return None
        return spread([f * self.epochs for f in self.step_boundaries], self.epochs)

    @property
    def network(self) -> str:
        """The network in a few words: the architecture, and what beyond the thesis changes
        its size (``C``; ``E x2, FC 4096-4096, crop 40``). What a pace is measured for."""
        parts = [self.arch + (f" x{self.width:g}" if self.width != 1.0 else "")]
        if self.fc_units:
            parts.append("FC " + "-".join(str(u) for u in self.fc_units))
        if self.crop:
            parts.append(f"crop {self.crop}")
        return ", ".join(parts)

    @property
    def data_seed(self) -> int:
        """The seed that draws a subset's images (``subset_seed``, else ``seed``)."""
        return self.seed if self.subset_seed is None else self.subset_seed

    def for_seed(self, index: int) -> TrainConfig:
        """Seed ``index`` (0-based) of this configuration: ``seed + index``, the subset of
        seed 0's images. Index 0 is this config itself, so a one-seed run is unchanged."""
        if index == 0:
            return self
        return self.replace(seed=self.seed + index, subset_seed=self.data_seed)

    def replace(self, **changes: Any) -> TrainConfig:
        return make_config({**self.model_dump(), **changes})

    def to_params(self) -> dict[str, str]:
        """Flat string params for MLflow (tuples as comma-joined lists; an unset
        ``subset_seed`` left out, so the params still round-trip)."""
        out = {}
        for k, v in self.model_dump().items():
            if v is None:
                continue
            out[k] = ",".join(str(x) for x in v) if isinstance(v, tuple | list) else str(v)
        return out


KNOWN_KEYS: tuple[str, ...] = tuple(TrainConfig.model_fields)
_KNOWN_KEYS_TEXT = "known keys: " + ", ".join(KNOWN_KEYS)


def spread(points: list[float], total: int) -> list[int]:
    """``points`` rounded to whole units in ``[1, total - 1]``, moved the least needed to be
    strictly increasing, so that every interval between them keeps at least one unit."""
    n = len(points)
    if total <= n:
        raise ValueError(f"{n} drop(s) need at least {n + 1} units, got {total}")
    out = [round(p) for p in points]
    for i in range(n):  # at least one unit before each point...
        out[i] = max(out[i], out[i - 1] + 1 if i else 1)
    for i in reversed(range(n)):  # ...and at least one after it
        out[i] = min(out[i], out[i + 1] - 1 if i < n - 1 else total - 1)
    return out


PRESETS: dict[str, dict[str, Any]] = {
    # Tables 5.6 and 5.7: Type C, ELU, BN after the activation, He normal, Adam, augmentation.
    "thesis-top1": dict(
        conv_dropout=0.3,
        fc_dropout=0.3,
        batch_size=64,
        epochs=80,
        optimizer="adam",
        lr=1e-3,
        schedule="step",
        step_boundaries=(0.5, 0.75),
    ),
    "thesis-top2": dict(
        conv_dropout=0.25,
        fc_dropout=0.5,
        batch_size=64,
        epochs=80,
        optimizer="adam",
        lr=1e-3,
        schedule="step",
        step_boundaries=(0.5, 0.75),
    ),
    "thesis-top3": dict(
        conv_dropout=0.25,
        fc_dropout=0.5,
        batch_size=128,
        epochs=100,
        optimizer="adam",
        lr=0.1,
        schedule="time_decay",
        decay=1e-3,
    ),
    # Beyond the thesis: the published recipes above 72 % (README, "Beyond the thesis"),
    # with one difference: PublicTest drives the schedule and picks the best epoch, and
    # PrivateTest is scored once at the end. Both train on a random 40 px crop of each image
    # per epoch (its ten crops at test time) where the papers' code trains on all ten.
    # Khaireddin & Chen 2021: VGG 64-128-256-512 (two convs a stage, BN), FC 4096-4096 with
    # dropout 0.2 and no BN, SGD Nesterov, weight decay 1e-4, plateau 0.75 / 5 on accuracy.
    "beyond-vgg": dict(
        arch="E",
        width=2.0,
        fc_units=(4096, 4096),
        fc_bn=False,
        initializer="pytorch",
        bn_momentum=0.9,
        crop=40,
        activation="relu",
        bn_position="before",
        conv_dropout=0.0,
        fc_dropout=0.2,
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        weight_decay_mode="l2",
        schedule="reduce_on_plateau",
        step_factor=0.75,
        plateau_patience=5,
        plateau_monitor="val_accuracy",
        batch_size=64,
        epochs=300,
        rotation=10.0,
        zoom=0.1,
        translate=0.2,
        crop_padding=4,
        fill_mode="constant",
        erasing=0.5,
    ),
    # A CIFAR-style ResNet-18 with label smoothing 0.1 and mixup (alpha 1), batch 128, lr 0.1,
    # the same augmentation, optimizer and plateau schedule (the code's defaults).
    "beyond-resnet18": dict(
        arch="resnet18",
        initializer="pytorch",
        bn_momentum=0.9,
        crop=40,
        activation="relu",
        bn_position="before",
        conv_dropout=0.0,
        fc_dropout=0.0,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=1e-4,
        weight_decay_mode="l2",
        label_smoothing=0.1,
        mixup_alpha=1.0,
        schedule="reduce_on_plateau",
        step_factor=0.75,
        plateau_patience=5,
        plateau_monitor="val_accuracy",
        batch_size=128,
        epochs=300,
        rotation=10.0,
        zoom=0.1,
        translate=0.2,
        crop_padding=4,
        fill_mode="constant",
        erasing=0.5,
    ),
}


def _config_key(path: str) -> str:
    return f"config key '{path}'"


def make_config(values: dict[str, Any], *, origin: str = "") -> TrainConfig:
    """Validate ``values`` into a TrainConfig, or raise a one-line UserError."""
    try:
        return TrainConfig(**values)
    except ValidationError as err:
        prefix = f"{origin}: " if origin else ""
        first = err.errors()[0]
        if first["type"] == "extra_forbidden":  # worded as parse_override words it
            key = first["loc"][0]
            raise UserError(f"{prefix}unknown config key '{key}' ({_KNOWN_KEYS_TEXT})") from None
        raise UserError(
            prefix + validation_message(err, TrainConfig, values, where=_config_key)
        ) from None
    except TypeError as err:  # non-string keys from a hand-written YAML mapping
        raise UserError(f"{origin + ': ' if origin else ''}invalid config: {err}") from None


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value``, the value read as YAML: ``lr=1e-3`` is a float, ``hflip=no`` a bool."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {item!r}: expected key=value")
    if key not in KNOWN_KEYS:
        raise UserError(f"--set {item!r}: unknown config key '{key}' ({_KNOWN_KEYS_TEXT})")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise UserError(f"--set {item!r}: value is not valid YAML") from None
    # YAML reads "1e-3" as a string (YAML 1.1 wants a dot); a float key still wants a number.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return key, value


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise UserError(f"{p}:{line} not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(
    *,
    path: str | Path | None = None,
    preset: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    **extra: Any,
) -> TrainConfig:
    """Defaults, then a preset, then a YAML file, then ``--set`` overrides, then ``extra``."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
        values.update(PRESETS[preset])
    if path is not None:
        file_values = read_yaml_mapping(path)
        make_config({**values, **file_values}, origin=str(path))
        values.update(file_values)
    for item in overrides:
        key, value = parse_override(item)
        values[key] = value
    values.update({k: v for k, v in extra.items() if v is not None})
    return make_config(values)
