"""What a person reads of a run in the MLflow UI: its name, note, tags and dataset input.

Everything here is a pure function of a study's definition and a trial's outcome, so that the
orchestration code only has to hand the results to MLflow: a trial's run name and choice
tags, its note (which says whether it stands beside the thesis, by
:func:`fer_sweep.thesis.comparable`), the study's summary and description, the source tags
(``mlflow.source.*``: the Source column) and the dataset input. ``mlflow.note.content`` is
MLflow's reserved name for the markdown note of a run or an experiment. The study's saved
view of its runs is :mod:`._views`'.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mlflow.entities import Dataset as MlflowDataset
from mlflow.entities import DatasetInput, InputTag

from fer_sweep import metric_names as mn
from fer_sweep import thesis
from fer_sweep.data import Dataset
from fer_sweep.fer2013 import SPLITS
from fer_sweep.search import SweepSpec, choice_text, choices_text
from fer_sweep.thesis import TOP3

NOTE = "mlflow.note.content"
CHOICE_TAG_PREFIX = "choice."
# MLflow refuses dataset digests longer than 36 characters (mlflow.utils.validation), so the
# digest is the start of the source's sha256; the whole hash is in the profile and a run tag.
DIGEST_CHARS = 16

# What each logged number means, for the experiment's description. Keyed by metric name.
METRIC_MEANINGS: dict[str, str] = {
    mn.TRAIN_LOSS: "Training split, each epoch: cross-entropy on the augmented batches",
    mn.TRAIN_ACCURACY: "Training split, each epoch: accuracy on the augmented batches",
    mn.LEARNING_RATE: "the optimizer's learning rate at the end of each epoch",
    mn.EPOCH_SECONDS: "wall-clock seconds of each epoch, its PublicTest pass included",
    mn.PUBLIC_LOSS: "PublicTest (validation), each epoch: cross-entropy",
    mn.PUBLIC_ACCURACY: "PublicTest (validation), each epoch: accuracy; selects epochs and trials",
    mn.PUBLIC_BEST: "the best epoch's PublicTest accuracy: the sweep's objective",
    mn.PUBLIC_FINAL: "the final epoch's PublicTest accuracy",
    mn.PRIVATE_FINAL: "PrivateTest (test) accuracy of the final weights: what the thesis's "
    "Table 5.7 reports",
    mn.PRIVATE_AT_BEST: "PrivateTest accuracy of the best-PublicTest epoch's weights: what "
    "`fer_sweep best` shows",
    mn.PRIVATE_FINAL_TENCROP: "PrivateTest accuracy of the final weights averaged over the ten "
    "crops of a network trained on crops (beyond the thesis)",
    mn.PRIVATE_AT_BEST_TENCROP: "the same for the best-PublicTest epoch's weights",
    mn.TRAIN_BEST: "the best epoch's training accuracy (what Section 5.3.4 compares)",
    mn.PRIVATE_AT_EPOCH: "PrivateTest accuracy after the epochs a sweep names (report_epochs), "
    "for the report only",
    mn.BEST_EPOCH: "the epoch with the best PublicTest accuracy (1-based)",
    mn.EPOCHS_TRAINED: "epochs the run trained (fewer when pruned or stopped)",
    mn.FIT_SECONDS: "wall-clock seconds of training (this attempt's epochs)",
    mn.EVAL_SECONDS: "wall-clock seconds of the PrivateTest evaluations",
}


def percent(fraction: float) -> str:
    """A 0-1 accuracy as the thesis writes it: percent with two decimals."""
    return f"{100.0 * fraction:.2f} %"


# --- the dataset and the code behind a run -------------------------------------------------


def dataset_input(dataset: Dataset, context: str = "training") -> DatasetInput:
    """The dataset as an MLflow input: name, digest, where it was read from, split sizes."""
    counts = dataset.counts()
    profile = {
        "sha256": dataset.sha256,
        "rows": {split: int(sum(counts[split])) for split in SPLITS},
        "rows_per_class": counts,
    }
    entity = MlflowDataset(
        name=Path(dataset.source).name,
        digest=dataset.sha256[:DIGEST_CHARS],
        source_type="local",
        source=json.dumps({"uri": Path(dataset.source).as_uri()}),
        profile=json.dumps(profile),
    )
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", context)])


def sweep_command(sweep_name: str, budget_name: str | None) -> str:
    """The command that runs (or resumes) a study: what its runs' Source column shows."""
    budget = f" --budget {budget_name}" if budget_name else ""
    return f"fer_sweep sweep {sweep_name}{budget}"


def source_tags(command: str) -> dict[str, str]:
    """The Source column: the fer_sweep command that made (and remakes) the run."""
    return {"mlflow.source.type": "LOCAL", "mlflow.source.name": command}


# --- a trial: its name, its choices, its note ----------------------------------------------


def trial_run_name(number: int, choices: dict[str, Any]) -> str:
    """``t04 dropout=0.8 FC only``: the trial number and what its sampler chose."""
    return f"t{number:02d} {choices_text(choices)}".rstrip()


def choice_tags(choices: dict[str, Any]) -> dict[str, str]:
    """One tag per sampled choice (named arms by their label), for columns and legends."""
    return {f"{CHOICE_TAG_PREFIX}{name}": choice_text(value) for name, value in choices.items()}


def study_summary(study_name: str, best, complete: int, config=None) -> str:
    """The study run's note: its best trial (by the objective), in percent, against the
    thesis only where :func:`fer_sweep.thesis.comparable` allows it.

    ``best`` is the best complete Optuna trial; its user attributes hold the split-named
    results (:mod:`fer_sweep.metric_names`); ``config`` is the config it trained (None:
    unknown, so not comparable). The first line says whether it is comparable.
    """
    attrs = best.user_attrs
    chosen = trial_run_name(best.number, best.params)
    epochs = int(attrs.get(mn.EPOCHS_TRAINED, 0))
    ref, why_not = (
        (None, "its config is unknown") if config is None else thesis.comparable(config, epochs)
    )
    final = attrs.get(mn.PRIVATE_FINAL)
    if ref is not None and final is not None:
        gap = 100.0 * final - ref.private_accuracy
        head = f"Best: {percent(final)} vs thesis {ref.private_accuracy:.2f} % ({gap:+.2f})"
    else:
        head = "Best trial: not comparable with the thesis"
    lines = [head, "", f"Best of {complete} complete trial(s) by PublicTest: {chosen}", ""]
    if ref is None:
        lines.append(f"- Not comparable with the thesis: {why_not}.")
    if mn.PUBLIC_BEST in attrs:
        lines.append(f"- PublicTest, best epoch: {percent(attrs[mn.PUBLIC_BEST])}")
    if mn.PRIVATE_FINAL in attrs:
        lines.append(f"- PrivateTest, final weights: {percent(attrs[mn.PRIVATE_FINAL])}")
    if mn.PRIVATE_AT_BEST in attrs:
        lines.append(f"- PrivateTest, best epoch's weights: {percent(attrs[mn.PRIVATE_AT_BEST])}")
    top = ", ".join(f"{r.private_accuracy:.2f} %" for r in TOP3)
    lines.append(f"- The thesis's top 3 (PrivateTest, final weights): {top}")
    return "\n".join(lines)


def _rank_word(rank: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}[rank]


def trial_note(
    config,
    *,
    private_final: float,
    private_at_best: float,
    best_epoch: int,
    epochs_trained: int,
) -> str:
    """A trial's note: its PrivateTest accuracy, against the thesis's only where
    :func:`fer_sweep.thesis.comparable` allows it (as ``best`` does).

    The first line is what the runs table's Description column shows (its first 50
    characters), so it says "not comparable" there when the trial is not.
    """
    ref, why_not = thesis.comparable(config, epochs_trained)
    trained = f"{config.subset} images per split" if config.subset else "all images"
    if ref is not None:
        gap = 100.0 * private_final - ref.private_accuracy
        first = (
            f"PrivateTest {percent(private_final)} vs thesis {ref.private_accuracy:.2f} % "
            f"({gap:+.2f})"
        )
        against = (
            f"the thesis's (its {_rank_word(ref.rank)} model, same recipe, same length): "
            f"{ref.private_accuracy:.2f} %, {gap:+.2f} points."
        )
    else:
        first = f"PrivateTest {percent(private_final)} (not comparable with thesis)"
        same = thesis.reference(config)
        against = f"not comparable with the thesis ({why_not})" + (
            f"; its {_rank_word(same.rank)} model, same recipe, reached "
            f"{same.private_accuracy:.2f} % after {same.epochs} epochs on all 28,709 training "
            "images."
            if same
            else "."
        )
    lines = [
        first,  # at most 50 characters: what the runs table's Description column shows
        "",
        f"- PrivateTest with the final weights: {percent(private_final)}; {against}",
        f"- With the best-PublicTest epoch's weights (epoch {best_epoch} of {epochs_trained}): "
        f"{percent(private_at_best)}.",
        f"- This trial trained {epochs_trained} epochs on {trained}.",
    ]
    if thesis.reference(config) is None:
        lines.append(
            "- The thesis's top 3: "
            + ", ".join(f"{r.private_accuracy:.2f} % ({r.dropout}, {r.epochs} ep)" for r in TOP3)
        )
    return "\n".join(lines)


# --- the study: its experiment's description -----------------------------------------------


def study_note(spec: SweepSpec, budget_name: str) -> str:
    """The experiment's description: the question, the thesis's finding, and the metrics."""
    budget = spec.budget(budget_name)
    size = f"{budget.subset} images per split" if budget.subset else "all images"
    length = f"{budget.epochs} epochs" if budget.epochs else "the thesis's epochs"
    objective = mn.objective(spec.objective_at)
    top = ", ".join(f"{r.private_accuracy:.2f} %" for r in TOP3)
    rows = "\n".join(f"| `{name}` | {meaning} |" for name, meaning in METRIC_MEANINGS.items())
    return "\n".join(
        [
            # Plain text: MLflow's experiments list shows the start of the note unrendered.
            f"{spec.name} ({budget_name}: {size}, {length}): {_headline(spec.description)}",
            "",
            f"Trials are ranked by `{objective}`; PrivateTest never selects anything.",
            "",
            "**What the study asks, and what the thesis found**",
            "",
            spec.description.strip() or "(the sweep file has no description)",
            "",
            f"The thesis's top 3 reach {top} PrivateTest accuracy (Tables 5.6-5.7, one run "
            "each: differences under about a point are noise). Each trial's note compares "
            "its PrivateTest accuracy with them, in percent.",
            "",
            "**Runs**: the parent run is the study; each child run is one trial, named by "
            "its number and what the sampler chose (`t04 dropout=0.8 FC only`), with every "
            f"choice as a `{CHOICE_TAG_PREFIX}NAME` tag and the whole config as params.",
            "",
            "**Metrics** (accuracies are fractions 0-1; their `_pct` twins and the notes give "
            "percent)",
            "",
            "| metric | meaning |",
            "|---|---|",
            rows,
            f"| `{mn.percent_name(mn.PUBLIC_BEST)}`, ... | the same accuracy in percent, two "
            "decimals, for each once-per-run accuracy above: what the runs table shows |",
            f"| `{mn.per_class('final', 'happy')}`, ... | PrivateTest accuracy per class "
            "(final weights; `at_best_epoch/...` for the best epoch's) |",
        ]
    )


def _headline(description: str) -> str:
    """The sweep file's first sentence (``Thesis 5.3.7, dropout rates``), on one line."""
    text = " ".join(description.split())
    first = re.split(r"(?<=[.?!]) ", text, maxsplit=1)[0]  # "5.3.7" has no space after a dot
    return first.removesuffix(".") or "(the sweep file has no description)"


def pct(fraction: float | None) -> str:
    """A 0-1 accuracy in percent with two decimals and no sign, for a table ("-": none)."""
    return "-" if fraction is None else f"{100 * fraction:.2f}"


def mean_sd(values: list[float]) -> str:
    """Accuracies (fractions) over seeds in percent: ``66.12 +- 0.41`` (mean +- sample sd),
    the value alone for one seed."""
    import statistics

    if len(values) < 2:
        return pct(values[0]) if values else "-"
    return f"{100 * statistics.fmean(values):.2f} +- {100 * statistics.stdev(values):.2f}"
