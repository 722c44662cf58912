"""Sweep files: the shipped ones load and reproduce the thesis's arms; wrong ones fail early.

No training here: everything runs through Optuna's in-memory storage and FixedTrial.
"""

from __future__ import annotations

import dataclasses
import itertools
import textwrap
from pathlib import Path
from typing import Any

import optuna
import pytest

from fer_sweep.config import PRESETS, TrainConfig, make_config
from fer_sweep.errors import UserError
from fer_sweep.search import (
    Budget,
    SweepSpec,
    arms,
    expand,
    make_pruner,
    make_sampler,
    suggest,
    trial_config_values,
    trial_label,
)
from fer_sweep.search import _sweepfile as sweepfile
from fer_sweep.search._space import BUILTIN_BUDGETS, distributions, grid_points

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
optuna.logging.set_verbosity(optuna.logging.WARNING)

# Each file's arms against the thesis text: tests/test_thesis_settings.py.
SHIPPED_GRIDS = {
    "augmentation": 3,
    "dropout_on_off": 2,
    "dropout": 6,
    "momentum": 4,
    "bn_position": 4,
    "architecture": 18,
    "lr_decay": 6,
    "optimizer": 4,
    "thesis_top3": None,
    "joint": None,
    "beyond": None,
}
THESIS = BUILTIN_BUDGETS["thesis"]


def grid_configs(spec: SweepSpec) -> list[TrainConfig]:
    """Every grid point of ``spec`` as a validated config at the thesis budget."""
    grid = {n: p.grid_values() for n, p in spec.params.items() if p.type != "fixed"}
    configs = []
    for values in itertools.product(*grid.values()):
        sampled = suggest(spec, optuna.trial.FixedTrial(dict(zip(grid, values, strict=True))))
        configs.append(make_config(trial_config_values(spec, sampled, THESIS)))
    return configs


def write_sweep(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- shipped sweeps


def test_the_shipped_sweeps_are_all_there() -> None:
    assert sweepfile.list_sweeps() == sorted(SHIPPED_GRIDS)


@pytest.mark.parametrize("name", sorted(SHIPPED_GRIDS))
def test_shipped_sweep_loads_with_description_grid_and_budget(name: str) -> None:
    spec = sweepfile.load_sweep(name)
    assert spec.name == name
    assert spec.path == sweepfile.sweeps_dir() / f"{name}.yaml"
    assert "5.3" in spec.description
    assert spec.grid_size() == SHIPPED_GRIDS[name]
    if spec.grid_size() is not None:
        assert spec.n_trials == spec.grid_size()
    assert spec.objective_at == "best"
    assert spec.default_budget in spec.budgets
    make_config(spec.budget(None).apply(spec.base))


@pytest.mark.parametrize("name", [n for n, g in SHIPPED_GRIDS.items() if g])
def test_every_grid_point_of_an_arm_file_is_a_distinct_valid_config(name: str) -> None:
    configs = grid_configs(sweepfile.load_sweep(name))
    assert len({c.model_dump_json() for c in configs}) == SHIPPED_GRIDS[name]


def test_optimizer_arms() -> None:
    configs = grid_configs(sweepfile.load_sweep("optimizer"))
    assert {(c.optimizer, c.momentum, c.nesterov) for c in configs} == {
        ("sgd", 0.0, False),
        ("sgd", 0.9, False),
        ("sgd", 0.9, True),
        ("adam", 0.0, False),
    }
    assert {c.lr for c in configs if c.optimizer == "adam"} == {1e-3}


def test_a_grid_study_runs_every_arm_once_and_stops() -> None:
    spec = sweepfile.load_sweep("dropout")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(make_config(trial_config_values(spec, suggest(spec, trial), THESIS)))
        return 0.0

    study.optimize(objective, n_trials=50)
    assert len(seen) == 6
    assert len({(c.conv_dropout, c.fc_dropout) for c in seen}) == 6


def test_thesis_top3_trials_equal_the_presets_then_the_labelled_lr_1e_3_arm() -> None:
    spec = sweepfile.load_sweep("thesis_top3")
    assert spec.n_trials == 4 and len(spec.trials) == 4
    configs = [
        make_config(trial_config_values(spec, expand(spec, trial), THESIS)) for trial in spec.trials
    ]
    presets = [make_config(PRESETS[f"thesis-top{i}"]) for i in (1, 2, 3)]
    assert configs[:3] == presets
    assert configs[3] == presets[2].replace(lr=1e-3)
    assert "not in the thesis" in spec.trials[3]["recipe"]


def test_thesis_top3_enqueued_trials_run_first_in_a_study() -> None:
    spec = sweepfile.load_sweep("thesis_top3")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec))
    for trial in spec.trials:
        study.enqueue_trial(trial)
    seen: list[TrainConfig] = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(make_config(trial_config_values(spec, suggest(spec, trial), THESIS)))
        return 0.0

    study.optimize(objective, n_trials=spec.n_trials)
    assert seen[:3] == [make_config(PRESETS[f"thesis-top{i}"]) for i in (1, 2, 3)]
    assert seen[3] == make_config(PRESETS["thesis-top3"]).replace(lr=1e-3)


# --------------------------------------------------------------------------- conditions


def test_suggest_with_fixed_trial_asks_only_for_active_parameters() -> None:
    spec = sweepfile.load_sweep("joint")
    common = dict(
        arch="C",
        activation="elu",
        bn_position="after",
        conv_dropout=0.3,
        fc_dropout=0.3,
        initializer="he_normal",
        batch_size=64,
        fc_l2=0.0,
        augment=True,
    )
    # FixedTrial raises on any parameter it was not given, so these prove the skips.
    adam = suggest(
        spec,
        optuna.trial.FixedTrial(
            {**common, "optimizer": "adam", "adam_lr": 1e-3, "schedule": "step"}
        ),
    )
    assert adam["lr"] == 1e-3 and "momentum" not in adam and "decay" not in adam
    sgd = suggest(
        spec,
        optuna.trial.FixedTrial(
            {
                **common,
                "optimizer": "sgd",
                "momentum": 0.95,
                "nesterov": True,
                "sgd_lr": 0.05,
                "schedule": "time_decay",
                "decay": 0.002,
            }
        ),
    )
    assert (sgd["lr"], sgd["momentum"], sgd["nesterov"], sgd["decay"]) == (0.05, 0.95, True, 0.002)
    make_config(trial_config_values(spec, sgd, THESIS))


def test_suggest_in_a_real_study_respects_conditions() -> None:
    spec = sweepfile.load_sweep("joint")
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(spec), pruner=make_pruner(spec)
    )

    def objective(trial: optuna.Trial) -> float:
        config = make_config(trial_config_values(spec, suggest(spec, trial), THESIS))
        return config.conv_dropout + config.fc_dropout

    study.optimize(objective, n_trials=25)
    optimizers = set()
    for trial in study.trials:
        p = trial.params
        optimizers.add(p["optimizer"])
        sgd_only = {"momentum", "nesterov", "sgd_lr"}
        if p["optimizer"] == "sgd":
            assert sgd_only <= p.keys() and "adam_lr" not in p
        else:
            assert not sgd_only & p.keys() and "adam_lr" in p
        assert ("decay" in p) == (p["schedule"] == "time_decay")
    assert optimizers == {"sgd", "adam"}


def test_expand_rebuilds_config_values_from_recorded_params() -> None:
    spec = sweepfile.load_sweep("bn_position")
    values = expand(spec, {"model": "Type A + ReLU", "bn_position": "before"})
    assert values == {"arch": "A", "activation": "relu", "bn_position": "before"}
    with pytest.raises(UserError, match=r"bn_position\.yaml: space\.bn_position"):
        expand(spec, {"model": "Type A + ReLU"})


def test_float_steps_come_back_rounded() -> None:
    spec = sweepfile.load_sweep("joint")
    assert spec.params["conv_dropout"].config_values(0.15000000000000002) == {"conv_dropout": 0.15}


def test_distributions_cover_the_sampled_parameters() -> None:
    spec = sweepfile.load_sweep("joint")
    dists = distributions(spec)
    assert list(dists) == list(spec.params)
    assert dists["adam_lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert dists["conv_dropout"].step == 0.05
    labels = distributions(sweepfile.load_sweep("dropout"))["dropout"].choices
    assert "0.3 all" in labels


# --------------------------------------------------------------------------- budgets


def test_budgets_apply() -> None:
    values = {"epochs": 80, "lr": 0.1}
    assert BUILTIN_BUDGETS["smoke"].apply(values) == {"epochs": 2, "lr": 0.1, "subset": 300}
    assert BUILTIN_BUDGETS["quick"].apply(values) == {"epochs": 10, "lr": 0.1, "subset": 0}
    assert THESIS.apply(values) == {"epochs": 80, "lr": 0.1, "subset": 0}
    assert values == {"epochs": 80, "lr": 0.1}


def test_a_shorter_budget_drops_the_report_epochs_it_never_reaches() -> None:
    values = {"epochs": 100, "report_epochs": [2, 30, 85]}
    assert BUILTIN_BUDGETS["smoke"].apply(values)["report_epochs"] == [2]
    assert BUILTIN_BUDGETS["quick"].apply(values)["report_epochs"] == [2]
    assert Budget(subset=0, epochs=30).apply(values)["report_epochs"] == [2, 30]
    assert THESIS.apply(values)["report_epochs"] == [2, 30, 85]
    assert values["report_epochs"] == [2, 30, 85]
    spec = sweepfile.load_sweep("augmentation")
    sampled = expand(spec, {"augmentation": "no rescale"})
    quick = make_config(trial_config_values(spec, sampled, spec.budget("quick")))
    full = make_config(trial_config_values(spec, sampled, THESIS))
    assert (quick.report_epochs, full.report_epochs) == ((), (90,))


def test_budgets_scale_fraction_schedules_and_keep_thesis_epochs() -> None:
    spec = sweepfile.load_sweep("dropout")
    sampled = expand(spec, {"dropout": "0.3 all"})
    quick = make_config(trial_config_values(spec, sampled, spec.budget("quick")))
    assert (quick.epochs, quick.step_epochs()) == (10, [5, 8])
    full = make_config(trial_config_values(spec, sampled, spec.budget("thesis")))
    assert (full.epochs, full.subset) == (80, 0)
    assert sweepfile.load_sweep("momentum").budget("thesis").apply({"epochs": 100})["epochs"] == 100


def test_file_budgets_and_the_default() -> None:
    spec = sweepfile.load_sweep("architecture")
    assert spec.budget(None) == spec.budget("slice") == Budget(subset=7000, epochs=15)
    assert set(BUILTIN_BUDGETS) < set(spec.budgets)
    with pytest.raises(UserError) as err:
        spec.budget("weekend")
    assert "architecture.yaml" in str(err.value) and "slice" in str(err.value)


# --------------------------------------------------------------------------- labels, arms


def test_a_trial_label_names_each_sampled_choice_in_file_order() -> None:
    spec = sweepfile.load_sweep("bn_position")
    params = {"bn_position": "before", "model": "Type A + ReLU"}
    assert trial_label(spec, params) == "model=Type A + ReLU; bn_position=before"
    assert trial_label(sweepfile.load_sweep("dropout"), {"dropout": "0.8 FC only"}) == (
        "dropout=0.8 FC only"
    )
    joint = sweepfile.load_sweep("joint")
    # Only the parameters the trial has (momentum is inactive for Adam); floats shortened.
    label = trial_label(joint, {"optimizer": "adam", "adam_lr": 0.000123456789})
    assert label == "optimizer=adam; adam_lr=0.0001235"


def test_a_fixed_parameter_is_not_part_of_the_label(tmp_path: Path) -> None:
    text = "space:\n  arch: {type: fixed, value: C}\n  lr: {type: float, low: 0.01, high: 0.1}\n"
    spec = sweepfile.load_sweep(write_sweep(tmp_path, text, "fixed.yaml"))
    assert trial_label(spec, {"arch": "C", "lr": 0.05}) == "lr=0.05"


def test_arms_are_the_grid_in_file_order_or_the_enqueued_trials() -> None:
    architecture = sweepfile.load_sweep("architecture")
    points = arms(architecture)
    assert len(points) == 18 and points == grid_points(architecture)
    assert [p["arch"] for p in points[:4]] == ["A", "A", "A", "B"]  # the first varies slowest
    top3 = sweepfile.load_sweep("thesis_top3")
    assert arms(top3) == [dict(t) for t in top3.trials]
    assert arms(sweepfile.load_sweep("joint")) == []


# --------------------------------------------------------------------------- wrong files

GOOD_SPACE = """
space:
  optimizer: {type: categorical, choices: [sgd, adam]}
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
"""

WRONG = {
    "unknown top-level key": ("spce: {}\n" + GOOD_SPACE, "spce: unknown top-level key"),
    "unknown param option": (
        "space:\n  lr: {type: float, low: 0.001, high: 0.1, lg: true}\n",
        "space.lr.lg: unknown option",
    ),
    "param not a config key": (
        "space:\n  learning_rate: {type: float, low: 0.001, high: 0.1}\n",
        "space.learning_rate: not a TrainConfig key",
    ),
    "low above high": (
        "space:\n  lr: {type: float, low: 0.1, high: 0.001}\n",
        "space.lr.low: low 0.1 is not below high 0.001",
    ),
    "log range through 0": (
        "space:\n  lr: {type: float, low: 0.0, high: 0.1, log: true}\n",
        "space.lr.low: a log range must be positive",
    ),
    "step that does not fit": (
        "space:\n  conv_dropout: {type: float, low: 0.0, high: 0.5, step: 0.3}\n",
        "space.conv_dropout.step: step 0.3 does not divide",
    ),
    "value outside the config field": (
        "space:\n  conv_dropout: {type: float, low: 0.0, high: 1.0}\n",
        "space.conv_dropout.high: 1.0 is not a valid conv_dropout",
    ),
    "condition on a missing parameter": (
        GOOD_SPACE + "  momentum: {type: float, low: 0.8, high: 0.99, when: {optimiser: sgd}}\n",
        "space.momentum.when.optimiser: no such parameter",
    ),
    "condition on an impossible value": (
        GOOD_SPACE
        + "  momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: rmsprop}}\n",
        "space.momentum.when.optimizer: optimizer can never be 'rmsprop'",
    ),
    "combination that is not a valid config": (
        GOOD_SPACE + "  nesterov: {type: categorical, choices: [true, false]}\n",
        "space: the combination",
    ),
    "two parameters set one key": (
        GOOD_SPACE + "  lr2: {type: float, low: 0.01, high: 0.1, key: lr}\n",
        "space.lr2: sets lr, which space.lr also sets",
    ),
    "arm with an unknown key": (
        "space:\n  dropout:\n    type: categorical\n    choices:\n      low: {conv_dropot: 0.1}\n",
        "space.dropout.choices.low.conv_dropot: not a TrainConfig key",
    ),
    "unknown sampler": (GOOD_SPACE + "sampler: {type: bayes}\n", "sampler.type: unknown sampler"),
    "unknown sampler option": (
        GOOD_SPACE + "sampler: {type: tpe, multivariat: true}\n",
        "sampler.multivariat: unknown option for a tpe sampler",
    ),
    "unknown pruner": (GOOD_SPACE + "pruner: {type: asha}\n", "pruner.type: unknown pruner"),
    "patient pruner without patience": (
        GOOD_SPACE + "pruner: {type: patient, wrapped: median}\n",
        "pruner.patience: missing",
    ),
    "grid with a continuous param": (
        GOOD_SPACE + "sampler: {type: grid}\n",
        "space.lr: a grid needs finite values",
    ),
    "grid with a conditional param": (
        "space:\n  optimizer: {type: categorical, choices: [sgd, adam]}\n"
        "  momentum: {type: categorical, choices: [0.9, 0.95], when: {optimizer: sgd}}\n"
        "sampler: grid\n",
        "space.momentum.when: the grid sampler cannot run conditional parameters",
    ),
    "bad base value": ("base: {lr: -1}\n" + GOOD_SPACE, "base.lr: -1 is not a valid lr"),
    "inconsistent base": (
        "base: {nesterov: true}\n" + GOOD_SPACE,
        "base: invalid config: nesterov needs optimizer sgd",
    ),
    "subset outside a budget": ("base: {subset: 500}\n" + GOOD_SPACE, "base.subset: subset is set"),
    "n_trials below 1": (GOOD_SPACE + "n_trials: 0\n", "n_trials: 0 is not an integer >= 1"),
    "bad timeout": (GOOD_SPACE + "timeout: soon\n", "timeout: 'soon' is not a duration"),
    "objective on PrivateTest": (
        GOOD_SPACE + "objective: {metric: test_accuracy}\n",
        "objective.metric: 'test_accuracy' cannot be optimised",
    ),
    "unknown budget key": (
        GOOD_SPACE + "budgets: {tiny: {subset: 100, epoch: 1}}\n",
        "budgets.tiny.epoch: unknown budget key",
    ),
    "default budget not defined": (
        GOOD_SPACE + "default_budget: weekend\n",
        "default_budget: 'weekend' is not a budget",
    ),
    "trial outside the space": (
        GOOD_SPACE + "trials: [{optimizer: rmsprop, lr: 0.01}]\n",
        "trials[0].optimizer: 'rmsprop' is outside the space",
    ),
    "duplicate key": (GOOD_SPACE + "  lr: {type: fixed, value: 0.1}\n", "duplicate key 'lr'"),
    "epoch step boundaries a budget cuts": (
        "base: {schedule: step, step_unit: epoch, step_boundaries: [40, 60], epochs: 80}\n"
        + GOOD_SPACE,
        "space: at budget smoke (300 images per split, 2 epochs) the combination",
    ),
    "an enqueued trial a budget cuts": (
        "base: {schedule: step, step_unit: epoch, step_boundaries: [4, 6], epochs: 8}\n"
        + GOOD_SPACE
        + "trials: [{optimizer: adam, lr: 0.01}]\n",
        "trials[0]: at budget smoke (300 images per split, 2 epochs) trial",
    ),
    "a file budget too short for its steps": (
        "base: {schedule: step, step_unit: epoch, step_boundaries: [4], epochs: 8}\n"
        + GOOD_SPACE
        + "budgets: {smoke: {subset: 100, epochs: 5}, short: {subset: 100, epochs: 3}}\n",
        "at budget short (100 images per split, 3 epochs)",
    ),
    "report epochs past the run": (
        "base: {report_epochs: [90], epochs: 80}\n" + GOOD_SPACE,
        "base: invalid config: report_epochs [90] go past the run's 80 epochs",
    ),
    "report of an unknown metric": (
        GOOD_SPACE + "report: [train/accuracy_best, val_accuracy]\n",
        "report[1]: 'val_accuracy' is not a per-trial metric; known: train/accuracy_best",
    ),
    "report listed twice": (
        GOOD_SPACE + "report: [train/accuracy_best, train/accuracy_best]\n",
        "report[1]: 'train/accuracy_best' is listed twice",
    ),
    "report not a list": (GOOD_SPACE + "report: train/accuracy_best\n", "report: expected a list"),
    "report at epochs without report_epochs": (
        GOOD_SPACE + "report: [PrivateTest/accuracy_at_epoch]\n",
        "report: PrivateTest/accuracy_at_epoch needs epochs to report at",
    ),
    "int bound not an integer": (
        "space:\n  batch_size: {type: int, low: 1.5, high: 64}\n",
        "space.batch_size.low: 1.5 is not an integer",
    ),
    "log not true or false": (
        "space:\n  lr: {type: float, low: 0.01, high: 0.1, log: 1}\n",
        "space.lr.log: 1 is not true or false",
    ),
    "hyperband max_resource": (
        GOOD_SPACE + "pruner: {type: hyperband, max_resource: big}\n",
        "pruner.max_resource: 'big' is not \"auto\" or an integer >= 1",
    ),
    "a key that is not text": ("3: x\n" + GOOD_SPACE, "3: key 3 is not text"),
    "a nested key that is not text": (
        GOOD_SPACE + "base: {true: 1}\n",
        "base.True: key True is not text; quote it in the YAML",
    ),
    "default budget a number": (
        GOOD_SPACE + "default_budget: 3\n",
        "default_budget: 3 is not a budget; known: smoke, quick, thesis",
    ),
    "default budget a list": (
        GOOD_SPACE + "budgets: {mine: {subset: 10}}\ndefault_budget: [mine]\n",
        "default_budget: ['mine'] is not a budget; known: smoke, quick, thesis, mine",
    ),
    "not YAML": ("space: {lr: [1, 2\n", "not valid YAML"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_a_wrong_file_fails_with_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, expected = WRONG[case]
    path = write_sweep(tmp_path, text)
    with pytest.raises(UserError) as err:
        sweepfile.load_sweep(path)
    message = str(err.value)
    assert message.startswith(f"{path}:"), message
    assert expected in message, message
    assert "\n" not in message


def test_a_missing_file_or_name_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(UserError, match="nowhere.yaml: no such file"):
        sweepfile.load_sweep(missing)
    with pytest.raises(UserError, match="no such sweep 'nosuch'; known sweeps: .*joint"):
        sweepfile.load_sweep("nosuch")


def test_the_good_space_loads_with_defaults(tmp_path: Path) -> None:
    spec = sweepfile.load_sweep(write_sweep(tmp_path, GOOD_SPACE, "good.yaml"))
    assert spec.name == "good" and spec.description == ""
    assert spec.sampler == {"type": "tpe", "seed": 0} and spec.pruner == {"type": "none"}
    assert (spec.n_trials, spec.timeout, spec.default_budget) == (None, None, "quick")
    assert spec.trials == () and spec.base == {}


def test_report_names_metrics_for_best_and_report_epochs_may_come_from_arms(
    tmp_path: Path,
) -> None:
    text = (
        GOOD_SPACE
        + "  length:\n    type: categorical\n    choices:\n"
        + "      short: {epochs: 20}\n      long: {epochs: 100, report_epochs: [90]}\n"
        + "report: [PrivateTest/accuracy_at_epoch, train/accuracy_best]\n"
    )
    spec = sweepfile.load_sweep(write_sweep(tmp_path, text, "r.yaml"))
    assert spec.report == ("PrivateTest/accuracy_at_epoch", "train/accuracy_best")
    assert sweepfile.load_sweep(write_sweep(tmp_path, GOOD_SPACE, "g.yaml")).report == ()


def test_a_sweep_parses_from_its_text_as_a_study_keeps_it(tmp_path: Path) -> None:
    loaded = sweepfile.load_sweep("bn_position")
    parsed = sweepfile.parse_sweep(loaded.path.read_text(), "kept/bn_position.yaml")
    assert parsed == dataclasses.replace(loaded, path=Path("kept/bn_position.yaml"))
    assert parsed.report == ("train/accuracy_best",)
    with pytest.raises(UserError, match=r"^kept/x\.yaml: space: missing or empty"):
        sweepfile.parse_sweep("name: x\n", "kept/x.yaml")


def test_the_committed_json_schema_is_current(tmp_path: Path) -> None:
    from fer_sweep.search._schema import schema, schema_text

    committed = Path(__file__).resolve().parents[1] / "sweeps" / "sweep.schema.json"
    assert committed.read_text(encoding="utf-8") == schema_text(), "run make schema"
    schema = schema()
    assert schema["required"] == ["space"] and schema["additionalProperties"] is False
    assert schema["properties"]["sampler"]["anyOf"][0]["enum"][:2] == ["tpe", "random"]
    # A mapping without type is the default type's, for the schema as for the loader.
    defs = schema["$defs"]
    assert "type" not in defs["TpeSampler"].get("required", [])
    assert "type" not in defs["NonePruner"].get("required", [])
    assert defs["RandomSampler"]["required"] == ["type"]
    untyped = sweepfile.load_sweep(write_sweep(tmp_path, GOOD_SPACE + "sampler: {seed: 3}\n"))
    assert untyped.sampler["type"] == "tpe"


def test_timeouts_numbers_and_yaml_floats(tmp_path: Path) -> None:
    text = GOOD_SPACE.replace("1.0e-4", "1e-4") + "timeout: 1h30m\n"
    spec = sweepfile.load_sweep(write_sweep(tmp_path, text, "t.yaml"))
    assert spec.timeout == 5400.0
    assert spec.params["lr"].low == 1e-4
    assert (
        sweepfile.load_sweep(write_sweep(tmp_path, GOOD_SPACE + "timeout: 90\n", "u.yaml")).timeout
        == 90
    )


def test_sweeps_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sweep(tmp_path, GOOD_SPACE, "mine.yaml")
    monkeypatch.setenv("FER_SWEEP_SWEEPS_DIR", str(tmp_path))
    assert sweepfile.sweeps_dir() == tmp_path
    assert sweepfile.list_sweeps() == ["mine"]
    assert sweepfile.load_sweep("mine").path == tmp_path / "mine.yaml"


# --------------------------------------------------------------------------- samplers, pruners

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
}
FINITE_SPACE = """
space:
  optimizer: {type: categorical, choices: [sgd, adam]}
  conv_dropout: {type: float, low: 0.0, high: 0.5, step: 0.25}
  batch_size: {type: int, low: 32, high: 128, step: 32}
"""


@pytest.mark.parametrize("kind", sorted(SAMPLERS))
def test_make_sampler_builds_each_type_and_it_samples(tmp_path: Path, kind: str) -> None:
    spec = sweepfile.load_sweep(
        write_sweep(tmp_path, FINITE_SPACE + f"sampler: {kind}\n", "s.yaml")
    )
    sampler = make_sampler(spec)
    assert type(sampler) is SAMPLERS[kind]
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: suggest(spec, t)["conv_dropout"], n_trials=4)
    assert len(study.trials) == 4
    assert spec.grid_size() == (3 * 4 * 2 if kind == "grid" else None)


def test_make_sampler_seed_override(tmp_path: Path) -> None:
    spec = sweepfile.load_sweep(write_sweep(tmp_path, GOOD_SPACE + "sampler: random\n", "s.yaml"))

    def first_lr(seed: int | None) -> Any:
        study = optuna.create_study(sampler=make_sampler(spec, seed=seed))
        study.optimize(lambda t: suggest(spec, t)["lr"], n_trials=1)
        return study.trials[0].params["lr"]

    assert first_lr(None) == first_lr(0) != first_lr(1)


PRUNERS = {
    "none": (optuna.pruners.NopPruner, ""),
    "median": (optuna.pruners.MedianPruner, ", n_warmup_steps: 3"),
    "hyperband": (optuna.pruners.HyperbandPruner, ", max_resource: auto, reduction_factor: 3"),
    "patient": (optuna.pruners.PatientPruner, ", patience: 2, wrapped: {type: median}"),
}


@pytest.mark.parametrize("kind", sorted(PRUNERS))
def test_make_pruner_builds_each_type(tmp_path: Path, kind: str) -> None:
    cls, options = PRUNERS[kind]
    text = GOOD_SPACE + f"pruner: {{type: {kind}{options}}}\n"
    pruner = make_pruner(sweepfile.load_sweep(write_sweep(tmp_path, text, "p.yaml")))
    assert type(pruner) is cls


def test_patient_pruner_wraps_median(tmp_path: Path) -> None:
    text = GOOD_SPACE + "pruner: {type: patient, patience: 3, min_delta: 0.01, wrapped: median}\n"
    spec = sweepfile.load_sweep(write_sweep(tmp_path, text, "p.yaml"))
    assert spec.pruner == {
        "type": "patient",
        "patience": 3,
        "min_delta": 0.01,
        "wrapped": {"type": "median"},
    }
    pruner = make_pruner(spec)
    assert isinstance(pruner._wrapped_pruner, optuna.pruners.MedianPruner)
    assert pruner._patience == 3


def test_tpe_group_without_multivariate_is_refused(tmp_path: Path) -> None:
    text = GOOD_SPACE + "sampler: {type: tpe, multivariate: false, group: true}\n"
    with pytest.raises(UserError, match=r"sampler\.group: group needs the multivariate TPE"):
        sweepfile.load_sweep(write_sweep(tmp_path, text))


def test_cmaes_needs_a_numeric_parameter(tmp_path: Path) -> None:
    text = "space:\n  optimizer: {type: categorical, choices: [sgd, adam]}\nsampler: cmaes\n"
    with pytest.raises(UserError, match=r"sampler\.type: cmaes samples int and float"):
        sweepfile.load_sweep(write_sweep(tmp_path, text))
