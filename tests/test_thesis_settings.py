"""Every shipped thesis sweep runs what the thesis ran.

The table below is the reference: per sweep file (one experiment of Section 5.3), the
settings every arm shares and each arm's own, each value with the section it comes from and
a short quote from the thesis text. A value the thesis leaves open is ``Assumed``, with the
reason. The tests compare the table with each arm's full resolved config at the thesis
budget, the same plan ``fer_sweep sweep NAME --budget thesis --plan`` prints; no training
and no TensorFlow.

Quotes are verbatim from the PDF extraction (``../shared/thesis/000_bbb969569b5417d9.txt``),
whitespace collapsed and the symbol font's private-use characters dropped: ``1 1e`` is
"1e-1" with its minus sign lost, ``0.5p`` is "p = 0.5". With the text present, a test checks
that every quote is in it.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fer_sweep import metric_names
from fer_sweep.config import TrainConfig, make_config
from fer_sweep.search import expand, list_sweeps, load_sweep, make_plan, render_plan
from fer_sweep.search._space import BUILTIN_BUDGETS

REPO = Path(__file__).resolve().parents[1]
THESIS_TEXT = REPO.parent / "shared" / "thesis" / "000_bbb969569b5417d9.txt"


@dataclass(frozen=True)
class Said:
    """A value the thesis states: the section and the words that state it."""

    value: Any
    section: str
    quote: str | tuple[str, ...]


@dataclass(frozen=True)
class Assumed:
    """A value the thesis leaves open, and why this one."""

    value: Any
    why: str


Setting = Said | Assumed


@dataclass(frozen=True)
class Experiment:
    common: dict[str, Setting]  # every arm
    arms: dict[str, dict[str, Setting]]  # by trial label, as the MLflow run is named
    report: tuple[str, ...] = ()


# --------------------------------------------------------------------------- shared setups

GLOROT = Assumed(
    "glorot_normal",
    "5.2.3 allows 'Xavier Glorot or He (MSRA) normal'; He is named only for the Adam/ELU runs",
)
PER_UPDATE = Assumed(
    "iteration",
    "'decay of 0.001' is Keras 2's decay= optimizer argument (5.2.1: 'implemented in Keras'), "
    "which counts updates; 5.3.6's formula counts epochs (lr_decay.yaml runs both)",
)
AUGMENTED = {
    "augment": Said(
        True, "5.3.1", "we use Data Augmentation by default in all the next experiments"
    ),
    "rotation": Said(10.0, "5.2.2", "random rotations with 10° range"),
    "zoom": Said(0.1, "5.2.2", "random zooms with 0.1 range"),
    "hflip": Said(True, "5.2.2", "random horizontal flips"),
    "fill_mode": Said("nearest", "5.2.2", "filled with the nearest mode"),
    "rescale": Said(True, "5.2.2", "with a rescaling factor of 1/ 255"),
    "checkpoint_every": Said(5, "5.2.1", "in HDF5 format, every five epochs"),
    "subset": Said(0, "3 / 5.1", "pre-defined a split into three folds"),
}
# The SGD setup of 5.3.1, which 5.3.2 and 5.3.3 reuse by reference.
SGD_5_3_1 = {
    "arch": Said("C", "5.3.1", "We use a Type C VGG-like CNNs"),
    # The pattern INPUT -> [[CONV -> ReLU -> BN] x2 -> POOL -> DO] x3 -> [FC -> ReLU -> BN ->
    # DO] x2 -> Last FC -> SOFTMAX, its arrows and brackets lost in the extraction.
    "activation": Said("relu", "5.3.1", "ReLU 2 3 ReLU 2 . INPUT CONV BN POOL DO"),
    "bn_position": Said("after", "5.3.1", "ReLU 2 3 ReLU 2 . INPUT CONV BN POOL DO"),
    "initializer": GLOROT,
    "conv_dropout": Said(0.25, "5.3.2", "The Dropout rates are 0.25 for the Convolutional layers"),
    "fc_dropout": Said(0.5, "5.3.2", "0.5 for the in-between Fully connected Layers"),
    "fc_l2": Assumed(0.0, "5.3.5 is the only section that adds L2"),
    "optimizer": Said("sgd", "5.3.1", "We start with an SGD optimizer with 128 batch size"),
    "lr": Said(0.1, "5.3.1", "learning rate 1 1e , Nesterov"),
    "momentum": Said(0.9, "5.3.1", "Nesterov and Momentum update with 0.9"),
    "nesterov": Said(True, "5.3.1", "Nesterov and Momentum update with 0.9"),
    "schedule": Said("time_decay", "5.3.1", "and decay of 0.001"),
    "decay": Said(0.001, "5.3.1", "and decay of 0.001"),
    "decay_unit": PER_UPDATE,
    "batch_size": Said(128, "5.3.1", "We start with an SGD optimizer with 128 batch size"),
    "epochs": Said(100, "5.2.3", "We train every model for up to 100 epochs"),
    **AUGMENTED,
}
# Table 5.5's Adam setup (5.3.7), shared with the 1st and 2nd models of Table 5.6.
ADAM_STEP = {
    "optimizer": Said("adam", "5.3.7, Table 5.5", "Batch Size 64 Optimizer Adam"),
    "lr": Said(1e-3, "5.3.7, Table 5.5", "1 3e , for the first 40 epochs"),
    "schedule": Said("step", "5.3.7, Table 5.5", "Learning Rate (step decayed)"),
    "step_factor": Said(
        0.1, "5.3.7, Table 5.5", ("1 3e , for the first 40 epochs", "1 4e , for the next 20 epochs")
    ),
    "step_epochs": Said(
        [40, 60],
        "5.3.7, Table 5.5",
        ("for the first 40 epochs", "for the next 20 epochs", "for the last 20 epochs"),
    ),
    "epochs": Said(80, "5.3.7, Table 5.5", "for the last 20 epochs"),
    "batch_size": Said(64, "5.3.7, Table 5.5", "Batch Size 64 Optimizer Adam"),
}


def _without(setup: dict[str, Setting], *keys: str) -> dict[str, Setting]:
    return {k: v for k, v in setup.items() if k not in keys}


# --------------------------------------------------------------------------- the table

# Fig. 5.11's runs are "decayed ... with the same configuration as Figure 5.10": 5.10's are not.
FIG_5_10 = "we used a decayed SGD (decay=0.001) with the same hyperparameter configuration as in"

ARCH_SETTINGS = {
    "lr 0.1 decay 0.001 (Fig. 5.11)": {
        "lr": Assumed(0.1, "5.3.5 gives no rate; 5.3.1's"),
        "schedule": Said("time_decay", "5.3.5", "we used a decayed SGD (decay=0.001)"),
        "decay": Said(0.001, "5.3.5", "we used a decayed SGD (decay=0.001)"),
        "fc_l2": Assumed(0.0, "L2 is added only together with the lower rate"),
    },
    "lr 0.1 no decay (Fig. 5.10)": {
        "lr": Assumed(0.1, "5.3.5 gives no rate; 5.3.1's"),
        "schedule": Said(
            "constant",
            "5.3.5",
            FIG_5_10,
        ),
        "decay": Said(
            0.0,
            "5.3.5",
            FIG_5_10,
        ),
        "fc_l2": Assumed(0.0, "L2 is added only together with the lower rate"),
    },
    "lr 0.01 decay 0.001 + L2(0.01) on FC": {
        "lr": Assumed(
            0.01,
            "'If we lower our learning rate' gives no value: one power of ten below 0.1, "
            "the thesis's step between rates (1e-3 -> 1e-4 -> 1e-5)",
        ),
        "schedule": Assumed("time_decay", "the lower rate changes Fig. 5.11's decayed SGD"),
        "decay": Said(0.001, "5.3.5", "we used a decayed SGD (decay=0.001)"),
        "fc_l2": Said(0.01, "5.3.5", "add a regularization L2(0.01) factor on the FC layers"),
    },
}
ARCH_QUOTES = {
    "A": ("Table 5.1", "Type A Type B Type C Type D 7 weight layers"),
    "B": ("Table 5.1", "Type A Type B Type C Type D 7 weight layers 7 weight layers"),
    "C": ("Table 5.1", "7 weight layers 7 weight layers 9 weight layers"),
    "D": ("Table 5.1", "9 weight layers 10 weight layers"),
    "E": ("Table 5.2", "Type E Type F 11 weight layers"),
    "F": ("Table 5.2", "11 weight layers 12 weight layers"),
}
TOP3 = {
    "arch": Said("C", "5.3.8", "The top 3 classification accuracies succeeded with a Type C model"),
    "activation": Said("elu", "5.3.8, Table 5.6", "Activation Function ELU ELU ELU"),
    "bn_position": Said(
        "after", "5.3.8", "Type C model using the pattern 2 3 2 . INPUT CONV ELU BN POOL DO"
    ),
    "initializer": Said(
        "he_normal", "5.3.8, Table 5.6", "He (MSRA) normal He (MSRA) normal He (MSRA) normal"
    ),
    "optimizer": Said("adam", "5.3.8, Table 5.6", "Optimizer Adam Adam Adam"),
    "beta1": Said(0.9, "5.3.8, Table 5.6", "decay 0.001, 0.9, 0.999, 1 8"),
    "beta2": Said(0.999, "5.3.8, Table 5.6", "decay 0.001, 0.9, 0.999, 1 8"),
    "epsilon": Said(1e-8, "5.3.8, Table 5.6", "decay 0.001, 0.9, 0.999, 1 8"),
    "fc_l2": Assumed(0.0, "Table 5.6 names no L2"),
    **AUGMENTED,
}
TOP3_STEP = {
    **ADAM_STEP,
    "epochs": Said(80, "5.3.8, Table 5.7", "1st 66.55 80th 2nd 65.88 80th"),
    "batch_size": Said(64, "5.3.8, Table 5.6", "Batch Size 64 64 128"),
}
TOP3_THIRD = {
    "schedule": Said("time_decay", "5.3.8, Table 5.6", "1 1, decay 0.001, 0.9, 0.999"),
    "decay": Said(0.001, "5.3.8, Table 5.6", "1 1, decay 0.001, 0.9, 0.999"),
    "decay_unit": PER_UPDATE,
    "batch_size": Said(128, "5.3.8, Table 5.6", "Batch Size 64 64 128"),
    "epochs": Said(100, "5.3.8, Table 5.7", "3rd 65.82 100th"),
    "conv_dropout": Said(
        0.25,
        "5.3.8, Table 5.6",
        "0.25 for the Convolutional layers 0.5 for the Fully Connected layers Table 5.7",
    ),
    "fc_dropout": Said(
        0.5,
        "5.3.8, Table 5.6",
        "0.25 for the Convolutional layers 0.5 for the Fully Connected layers Table 5.7",
    ),
}
TOP3_STEP_LABEL = "recipe=step 1e-3/1e-4/1e-5 over 40/20/20 epochs at batch 64"
TOP3_THIRD_LABEL = "time decay 0.001 at batch 128 for 100 epochs"
TOP3_THIRD_DROPOUT = "dropout=0.25 conv / 0.5 FC"
ELU_5_3_7 = {
    "arch": Said("C", "5.3.7", "In this experiment, we use Type C CNNs"),
    "activation": Said("elu", "5.3.7, Table 5.5", "Activation Function ELU Weight Initialization"),
    "bn_position": Said(
        "after",
        "5.3.7",
        "INPUT CONV ELU BN POOL DO FC ELU BN DO Last FC SOFTMAX The hyperparameters",
    ),
    "initializer": Said(
        "he_normal", "5.3.7, Table 5.5", "Weight Initialization He (MSRA) normal Dropout Rates"
    ),
    "fc_l2": Assumed(0.0, "Table 5.5 names no L2"),
    **ADAM_STEP,
    **AUGMENTED,
}

LR_DECAY_OPTIMIZERS = {
    "SGD lr 0.1 Nesterov 0.9": {
        "optimizer": Said("sgd", "5.3.1", "We start with an SGD optimizer"),
        "lr": Said(0.1, "5.3.1", "learning rate 1 1e , Nesterov"),
        "momentum": Said(0.9, "5.3.1", "Nesterov and Momentum update with 0.9"),
        "nesterov": Said(True, "5.3.1", "Nesterov and Momentum update with 0.9"),
    },
    "Adam lr 1e-3": {
        "optimizer": Said("adam", "5.3.7, Table 5.5", "Batch Size 64 Optimizer Adam"),
        "lr": Said(1e-3, "5.3.7, Table 5.5", "1 3e , for the first 40 epochs"),
        "momentum": Assumed(0.0, "Adam has no momentum"),
        "nesterov": Assumed(False, "Adam has no momentum"),
    },
}
TIME_BASED = Said("time_decay", "5.3.6", "the time-based decay and the step decay")
LR_DECAY_SCHEDULES = {
    "time decay per update (Keras 2)": {"schedule": TIME_BASED, "decay_unit": PER_UPDATE},
    "time decay per epoch (5.3.6 formula)": {
        "schedule": TIME_BASED,
        "decay_unit": Said(
            "epoch",
            "5.3.6",
            ("we adjust the learning rate every epoch", "k the decay rate and e the epoch number"),
        ),
    },
    "step x0.1 at 50% and 75%": {
        "schedule": Said(
            "step", "5.3.6", "we drop the learning rate during training by some factor"
        ),
    },
}

EXPERIMENTS: dict[str, Experiment] = {
    "augmentation": Experiment(
        common={
            **_without(SGD_5_3_1, "augment", "rescale"),
            "report_epochs": Said(
                (90,), "5.3.1", "At the end of the 90th epoch, the private set accuracy"
            ),
        },
        arms={
            "augmentation=all (augment + rescale)": {
                "augment": Said(
                    True, "5.3.1", "We used a model with all Data Augmentation arguments applied"
                ),
                "rescale": Said(
                    True, "5.3.1", "We used a model with all Data Augmentation arguments applied"
                ),
            },
            "augmentation=no rescale": {
                "augment": Said(
                    True, "5.3.1", "along with a model we did not use a rescaling factor"
                ),
                "rescale": Said(
                    False, "5.3.1", "along with a model we did not use a rescaling factor"
                ),
            },
            "augmentation=none (rescale kept)": {
                "augment": Said(
                    False,
                    "5.3.1",
                    "The absence of any Data Augmentation technique leads to overfitting",
                ),
                "rescale": Assumed(
                    True,
                    "5.2.2 applies the rescale to validation and test too; "
                    "keeping it isolates the augmentation",
                ),
            },
        },
        report=(metric_names.PRIVATE_AT_EPOCH,),
    ),
    "dropout_on_off": Experiment(
        common=_without(SGD_5_3_1, "conv_dropout", "fc_dropout"),
        arms={
            "dropout=on (0.25 conv / 0.5 FC)": {
                "conv_dropout": Said(
                    0.25, "5.3.2", "The Dropout rates are 0.25 for the Convolutional layers"
                ),
                "fc_dropout": Said(0.5, "5.3.2", "0.5 for the in-between Fully connected Layers"),
            },
            "dropout=off": {
                "conv_dropout": Said(
                    0.0, "5.3.2", "whether the lack of any Dropout technique affects"
                ),
                "fc_dropout": Said(
                    0.0, "5.3.2", "whether the lack of any Dropout technique affects"
                ),
            },
        },
    ),
    "momentum": Experiment(
        common={
            **_without(SGD_5_3_1, "momentum", "nesterov"),
            "arch": Said(
                "C",
                "5.3.3",
                "By using the same Type C VGG-like type and architecture as described in 5.3.1",
            ),
            "report_epochs": Said(
                (30, 85),
                "5.3.3",
                (
                    "By the end of the 30th epoch",
                    "(Figure 5.5: Yellow-lined model) on the 85th epoch",
                ),
            ),
        },
        arms={
            "momentum_update=plain SGD": {
                "momentum": Said(0.0, "5.3.3", "the test accuracy of the non-accelerated method"),
                "nesterov": Said(False, "5.3.3", "the test accuracy of the non-accelerated method"),
            },
            "momentum_update=Nesterov 0.9": {
                "momentum": Said(
                    0.9,
                    "5.3.3",
                    "A standard set of value for the Momentum update hyperparameter is 0.9",
                ),
                "nesterov": Said(
                    True, "5.3.3", "Momentum update along with Nesterov accelerated momentum update"
                ),
            },
            "momentum_update=Nesterov 0.95": {
                "momentum": Said(0.95, "5.3.3", "if we set the Momentum rate to 0.95"),
                "nesterov": Assumed(
                    True, "the rates are tried on the 5.3.1 setup, which is Nesterov"
                ),
            },
            "momentum_update=Nesterov 0.99": {
                "momentum": Said(0.99, "5.3.3", "A Momentum rate set to 0.99"),
                "nesterov": Assumed(
                    True, "the rates are tried on the 5.3.1 setup, which is Nesterov"
                ),
            },
        },
        report=(metric_names.PRIVATE_AT_EPOCH,),
    ),
    "bn_position": Experiment(
        common={
            **{
                k: Assumed(v.value, "5.3.4 names no optimizer or rates: the 5.3.1 setup")
                for k, v in _without(SGD_5_3_1, "arch", "activation", "bn_position").items()
                if k not in AUGMENTED
            },
            **AUGMENTED,
            "epochs": Said(
                100, "5.3.4", "by the end of the 95th epoch. These are the best training accuracies"
            ),
        },
        arms={
            "model=Type A + ReLU; bn_position=after": {
                "arch": Said("A", "5.3.4", "a 7-weight layer Type A"),
                "activation": Said(
                    "relu", "5.3.4", "INPUT CONV RELU BN POOL DO CONV RELU BN POOL DO"
                ),
                "bn_position": Said(
                    "after", "5.3.4", "INPUT CONV RELU BN POOL DO CONV RELU BN POOL DO"
                ),
            },
            "model=Type A + ReLU; bn_position=before": {
                "arch": Said("A", "5.3.4", "a 7-weight layer Type A"),
                "activation": Said(
                    "relu", "5.3.4", "INPUT CONV BN RELU POOL DO CONV BN RELU POOL DO"
                ),
                "bn_position": Said(
                    "before", "5.3.4", "INPUT CONV BN RELU POOL DO CONV BN RELU POOL DO"
                ),
            },
            "model=Type C + ELU; bn_position=after": {
                "arch": Said("C", "5.3.4", "a deeper 9-weight layer Type C"),
                "activation": Said("elu", "5.3.4", "INPUT CONV ELU BN POOL DO FC ELU BN DO"),
                "bn_position": Said("after", "5.3.4", "INPUT CONV ELU BN POOL DO FC ELU BN DO"),
            },
            "model=Type C + ELU; bn_position=before": {
                "arch": Said("C", "5.3.4", "a deeper 9-weight layer Type C"),
                "activation": Said("elu", "5.3.4", "INPUT CONV BN ELU POOL DO FC BN ELU DO"),
                "bn_position": Said("before", "5.3.4", "INPUT CONV BN ELU POOL DO FC BN ELU DO"),
            },
        },
        report=(metric_names.TRAIN_BEST,),
    ),
    "architecture": Experiment(
        common={
            "activation": Said(
                "relu",
                "5.3.5",
                "Every model uses the following pattern: , INPUT CONV RELU BN N POOL DO M",
            ),
            "bn_position": Said(
                "after",
                "5.3.5",
                "Every model uses the following pattern: , INPUT CONV RELU BN N POOL DO M",
            ),
            "optimizer": Said("sgd", "5.3.5", "we used a decayed SGD (decay=0.001)"),
            **{
                k: Assumed(
                    SGD_5_3_1[k].value,
                    "'the same hyperparameter configuration as in Figure 5.10', "
                    "which 5.3.5 does not give: 5.3.1's",
                )
                for k in ("momentum", "nesterov", "batch_size", "conv_dropout", "fc_dropout")
            },
            "initializer": GLOROT,
            "decay_unit": PER_UPDATE,
            "epochs": Said(100, "5.2.3", "We train every model for up to 100 epochs"),
            **AUGMENTED,
        },
        arms={
            f"arch={arch}; setup={label}": {
                "arch": Said(arch, *ARCH_QUOTES[arch]),
                **settings,
            }
            for arch, (label, settings) in itertools.product("ABCDEF", ARCH_SETTINGS.items())
        },
    ),
    "lr_decay": Experiment(
        common={
            **{k: v for k, v in ELU_5_3_7.items() if k not in ("optimizer", "lr", "schedule")},
            "conv_dropout": Assumed(0.25, "5.3.6 gives no setting: the 2nd model's rates"),
            "fc_dropout": Assumed(0.5, "5.3.6 gives no setting: the 2nd model's rates"),
            "decay": Said(0.001, "5.3.1", "and decay of 0.001"),
        },
        arms={
            f"optimizer={opt}; schedule={sched}": {**opt_settings, **sched_settings}
            for (opt, opt_settings), (sched, sched_settings) in itertools.product(
                LR_DECAY_OPTIMIZERS.items(), LR_DECAY_SCHEDULES.items()
            )
        },
    ),
    "dropout": Experiment(
        common=ELU_5_3_7,
        arms={
            "dropout=0.25 conv / 0.5 FC": {
                "conv_dropout": Said(
                    0.25,
                    "5.3.7, Table 5.5",
                    "Red line: 0.25 for the Convolutional layers 0.5 for the Fully Connected",
                ),
                "fc_dropout": Said(
                    0.5,
                    "5.3.7, Table 5.5",
                    "Red line: 0.25 for the Convolutional layers 0.5 for the Fully Connected",
                ),
            },
            "dropout=0.3 all": {
                "conv_dropout": Said(
                    0.3, "5.3.7, Table 5.5", "Blue line: 0.3 in the whole network"
                ),
                "fc_dropout": Said(0.3, "5.3.7, Table 5.5", "Blue line: 0.3 in the whole network"),
            },
            "dropout=0.5 all": {
                "conv_dropout": Said(
                    0.5, "5.3.7, Table 5.5", "Grey line: 0.5 in the whole network"
                ),
                "fc_dropout": Said(0.5, "5.3.7, Table 5.5", "Grey line: 0.5 in the whole network"),
            },
            "dropout=0.8 all": {
                "conv_dropout": Said(
                    0.8, "5.3.7, Table 5.5", "Yellow line: 0.8 in the whole network"
                ),
                "fc_dropout": Said(
                    0.8, "5.3.7, Table 5.5", "Yellow line: 0.8 in the whole network"
                ),
            },
            "dropout=0.8 FC only": {
                "conv_dropout": Said(0.0, "5.3.7, Table 5.5", "Green line: 0.8 only on FC layer"),
                "fc_dropout": Said(0.8, "5.3.7, Table 5.5", "Green line: 0.8 only on FC layer"),
            },
            "dropout=0.5 FC only": {
                "conv_dropout": Said(
                    0.0, "5.3.7", "The use of a Dropout rate 0.5p only in the in-between FC layers"
                ),
                "fc_dropout": Said(
                    0.5, "5.3.7", "The use of a Dropout rate 0.5p only in the in-between FC layers"
                ),
            },
        },
    ),
    "thesis_top3": Experiment(
        common=TOP3,
        arms={
            f"{TOP3_STEP_LABEL}; dropout=0.3 all": {
                **TOP3_STEP,
                "conv_dropout": Said(
                    0.3, "5.3.8, Table 5.6", "Dropout Rates 0.3 in the whole network"
                ),
                "fc_dropout": Said(
                    0.3, "5.3.8, Table 5.6", "Dropout Rates 0.3 in the whole network"
                ),
            },
            f"{TOP3_STEP_LABEL}; dropout=0.25 conv / 0.5 FC": {
                **TOP3_STEP,
                "conv_dropout": Said(
                    0.25,
                    "5.3.8, Table 5.6",
                    "0.3 in the whole network 0.25 for the Convolutional layers 0.5",
                ),
                "fc_dropout": Said(
                    0.5,
                    "5.3.8, Table 5.6",
                    "0.3 in the whole network 0.25 for the Convolutional layers 0.5",
                ),
            },
            f"recipe=lr 1e-1 as printed with {TOP3_THIRD_LABEL}; {TOP3_THIRD_DROPOUT}": {
                **TOP3_THIRD,
                # "lr = 1e-1" in Table 5.6's third column, garbled: kept as printed.
                "lr": Said(0.1, "5.3.8, Table 5.6", "for the last 20 epochs 1 2 1 1, decay 0.001"),
            },
            f"recipe=lr 1e-3 (not in the thesis) with {TOP3_THIRD_LABEL}; {TOP3_THIRD_DROPOUT}": {
                **TOP3_THIRD,
                "lr": Assumed(
                    1e-3, "Adam's usual rate, beside the printed 1e-1 (a hundred times it)"
                ),
            },
        },
    ),
}
# Sweep files that are not one thesis experiment; their descriptions must say so.
EXTENSIONS = {"joint", "optimizer", "beyond"}


# --------------------------------------------------------------------------- helpers


def actual(config: TrainConfig, key: str) -> Any:
    """The config's value for ``key``; ``step_epochs`` is where a step schedule drops."""
    if key == "step_epochs":
        return config.step_epochs()
    return getattr(config, key)


def settings_of(experiment: Experiment, label: str) -> dict[str, Setting]:
    return {**experiment.common, **experiment.arms[label]}


def normalise(text: str) -> str:
    """Whitespace collapsed, the symbol font's private-use characters (U+E000-U+F8FF) out."""
    return " ".join(re.sub("[\ue000-\uf8ff]", " ", text).split())


def all_quotes() -> set[str]:
    quotes = set()
    for experiment in EXPERIMENTS.values():
        for label in experiment.arms:
            for setting in settings_of(experiment, label).values():
                if isinstance(setting, Said):
                    q = setting.quote
                    quotes.update((q,) if isinstance(q, str) else q)
    return quotes


# --------------------------------------------------------------------------- the tests


def test_every_shipped_sweep_is_a_thesis_experiment_or_labelled_an_extension() -> None:
    assert set(list_sweeps()) == set(EXPERIMENTS) | EXTENSIONS
    for name in EXTENSIONS | {"lr_decay"}:
        assert load_sweep(name).description.startswith("Extension"), name


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_each_arm_at_the_thesis_budget_is_what_the_thesis_ran(name: str) -> None:
    experiment = EXPERIMENTS[name]
    spec = load_sweep(name)
    plan = make_plan(spec, "thesis")
    assert sorted(t.label for t in plan.trials) == sorted(experiment.arms)
    assert plan.n_trials == len(plan.trials)  # every arm runs, nothing else
    assert spec.report == experiment.report
    wrong = []
    for trial in plan.trials:
        for key, setting in settings_of(experiment, trial.label).items():
            got = actual(trial.config, key)
            if got != setting.value:
                source = (
                    f"{setting.section}: {setting.quote!r}"
                    if isinstance(setting, Said)
                    else f"assumed: {setting.why}"
                )
                wrong.append(
                    f"{trial.label}: {key} = {got!r}, expected {setting.value!r} ({source})"
                )
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_the_table_covers_every_key_an_arm_sets(name: str) -> None:
    """A key a sweep file sets (base or arm) that the table does not check is unreviewed."""
    experiment = EXPERIMENTS[name]
    spec = load_sweep(name)
    for trial in make_plan(spec, "thesis").trials:
        set_keys = set(spec.base) | set(expand(spec, trial.params))
        # The step schedule's boundaries are checked as the epochs they resolve to.
        checked = set(settings_of(experiment, trial.label)) | {"step_boundaries", "step_unit"}
        missing = sorted(set_keys - checked)
        assert not missing, f"{trial.label}: {missing} not in the table"


def test_every_quote_is_in_the_thesis_text() -> None:
    if not THESIS_TEXT.is_file():
        pytest.skip(f"{THESIS_TEXT} not here")
    text = normalise(THESIS_TEXT.read_text(encoding="utf-8"))
    missing = sorted(q for q in all_quotes() if normalise(q) not in text)
    assert not missing, missing


@pytest.mark.parametrize("budget", sorted(BUILTIN_BUDGETS))
@pytest.mark.parametrize("name", list_sweeps())
def test_every_shipped_sweep_plans_valid_distinct_arms_at_every_budget(
    name: str, budget: str
) -> None:
    spec = load_sweep(name)
    plan = make_plan(spec, budget)
    thesis = {t.label: t.config for t in make_plan(spec, "thesis").trials}
    chosen = BUILTIN_BUDGETS[budget]
    for trial in plan.trials:
        config, full = trial.config, thesis[trial.label]
        assert config.subset == chosen.subset
        assert config.epochs == (chosen.epochs or full.epochs)
        # A shorter run keeps the report epochs it reaches and drops the rest.
        assert config.report_epochs == tuple(e for e in full.report_epochs if e <= config.epochs)
        assert trial.dropped_report_epochs == tuple(
            e for e in full.report_epochs if e > config.epochs
        )
        assert (
            config.replace(epochs=full.epochs, subset=0, report_epochs=full.report_epochs) == full
        )
    assert len({t.config for t in plan.trials}) == len(plan.trials)
    if not plan.trials:  # sampled from the start: the plan shows its base config
        assert make_config(plan.budget.apply(dict(spec.base))) == plan.base_config()


def test_the_quick_budget_keeps_every_step_of_the_thesis_schedule() -> None:
    trials = make_plan(load_sweep("dropout"), "quick").trials
    assert {tuple(t.config.step_epochs()) for t in trials} == {(5, 8)}


def test_plan_on_the_command_line_prints_every_arm_and_writes_nothing(tmp_path: Path) -> None:
    # In a fresh interpreter, so that what it imports is its own doing.
    code = (
        "import sys\n"
        "from fer_sweep.cli._app import main\n"
        "main(['sweep', 'dropout', '--budget', 'thesis', '--plan'])\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules)\n"
        "print('# imported:', heavy)\n"
    )
    store = tmp_path / "store"
    # This machine's pace of C at batch 64 is known (a fresh machine would measure it with a
    # short fit, which is what loads TensorFlow): the plan's forecast comes from the cache.
    from fer_sweep.lifecycle import FER2013_TRAINING_IMAGES, PaceCache, pace_key
    from fer_sweep.lifecycle._forecast import Pace

    cache = tmp_path / "cache"
    key = pace_key("tensorflow", "C", 64, FER2013_TRAINING_IMAGES)
    PaceCache(cache).put(key, Pace(0.01, "2026-12-04T00:00:00+00:00", "set by the test"))
    env = {
        "FER_SWEEP_STORE": str(store),
        "FER_SWEEP_CACHE": str(cache),
        "FER_SWEEP_MEASURE_PACE": "off",
        "KERAS_BACKEND": "tensorflow",
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("# imported: []")
    first = out.stdout.splitlines()[0]
    assert "6 trials left × 80 epochs" in first and "set by the test" in first, first
    assert "unknown" not in first, first
    assert not store.exists()
    docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    planned = make_plan(load_sweep("dropout"), "thesis").trials
    assert [make_config(d) for d in docs] == [t.config for t in planned]
    for trial in planned:
        assert f"# trial {planned.index(trial) + 1}/6: {trial.label}\n" in out.stdout


def test_plan_of_a_sampled_sweep_shows_its_space() -> None:
    text = render_plan(make_plan(load_sweep("joint"), "quick"))
    assert "every trial: 50 trial(s) sampled by tpe" in text
    assert "sgd_lr (sets lr): a number from 0.001 to 0.2 (log scale) when optimizer = sgd" in text
    (doc,) = [d for d in yaml.safe_load_all(text) if d is not None]
    assert make_config(doc).epochs == 10
