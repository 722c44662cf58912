"""Terminal output of a sweep: the live study view."""

import io

import optuna
from rich.console import Console

from fer_sweep.progress import StudyView


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
