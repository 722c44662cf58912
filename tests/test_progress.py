"""Terminal output: the live study view of a sweep, the epoch bars of one run."""

import io

import optuna
from rich.console import Console

from fer_sweep.progress import EpochProgress, StudyView


def test_the_line_after_the_study_view_starts_a_line_of_its_own_in_a_file():
    study = optuna.create_study(study_name="glue", direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=100)
    with StudyView(study, n_trials=1, epochs=2, jobs=1, console=console):
        pass
    print("study glue: 1 complete", file=out)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "study glue: 1 complete"
    assert "1 done" in out.getvalue()


def _one_epoch(bar: EpochProgress, epoch: int) -> None:
    bar.on_epoch_begin(epoch)
    bar.on_train_batch_end(0)
    bar.on_epoch_end(epoch, {"loss": 1.25, "accuracy": 0.5, "val_accuracy": 0.375})


def test_each_epoch_is_a_line_in_a_log_file_as_soon_as_it_ends():
    out = io.StringIO()
    bar = EpochProgress(80, 449, console=Console(file=out, force_terminal=False, width=100))
    bar.on_train_begin()
    _one_epoch(bar, 4)  # a run resumed after epoch 4
    # Written before the run ends: a log followed during a run of hours shows every epoch.
    assert out.getvalue().startswith("epoch 5/80  loss 1.2500 accuracy 0.5000 val_accuracy 0.3750")
    _one_epoch(bar, 5)
    bar.on_train_end()
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 5/80", "epoch 6/80"]


def test_a_terminal_gets_the_bars_not_the_lines():
    out = io.StringIO()
    bar = EpochProgress(3, 10, console=Console(file=out, force_terminal=True, width=100))
    bar.on_train_begin()
    _one_epoch(bar, 0)
    bar.on_train_end()
    assert "epoch 1/3  loss" not in out.getvalue()
    assert "1/3" in out.getvalue()  # the run bar's count
