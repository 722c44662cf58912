"""Ensembles of finished models: the average of their softmax outputs, with test-time views.

An ensemble is evaluated once, on PrivateTest, like any finished model; its members are
chosen beforehand (by PublicTest, or by recipe), never by their PrivateTest accuracy. Members
are sweep trials (their logged final models; every seed's, for a trial of several seeds) and
reproduction runs (their folders' ``final.keras``), in any mix, as long as all were scored
on the same PrivateTest images. Test-time views (``tta``): ``flip`` averages each image
with its mirror (the training augmentation flips faces, so the mirror is as valid a face);
``ten_crop`` averages a network trained on crops over its ten crops, and each member that
was not trained on crops over the mirror instead. Works on any Keras backend: the models are
the saved bare networks, which take raw 0-255 pixels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
from mlflow.entities import Metric

from fer_sweep.errors import UserError, first_line
from fer_sweep.training import SplitReport, predictions, report_of
from fer_sweep.training.predictions import probabilities

if TYPE_CHECKING:
    import optuna

    from fer_sweep.config import TrainConfig

TTA_CHOICES = ("none", "flip", "ten_crop")


def member_view(tta: str | bool, crop: int) -> tuple[str | bool, int]:
    """What :func:`~fer_sweep.training.predictions.probabilities` averages for one member:
    ten crops only for a network trained on crops, its mirror for the others."""
    if tta == "ten_crop":
        return ("ten_crop", crop) if crop else (True, 0)
    return (tta in (True, "flip"), 0)


def ensemble_probabilities(
    models: Sequence[keras.Model | str | Path],
    images: np.ndarray,
    *,
    tta: str | bool = False,
    crops: Sequence[int] | None = None,
) -> np.ndarray:
    """The mean softmax ``(n, 7)`` of ``models`` (models or ``.keras`` paths) on ``images``,
    each averaged over its test-time views (:func:`member_view`, with its ``crops``).

    Models given as paths are loaded one at a time, so an ensemble of many never holds more
    than one in memory.
    """
    if not models:
        raise ValueError("an ensemble needs at least one model")
    crops = list(crops) if crops is not None else [0] * len(models)
    total = np.zeros((len(images), 7))
    for member, crop in zip(models, crops, strict=True):
        model = member if isinstance(member, keras.Model) else keras.models.load_model(member)
        how, size = member_view(tta, crop)
        total += probabilities(model, images, tta=how, crop=size)
    return total / len(models)


def ensemble_report(
    models: Sequence[keras.Model | str | Path],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    tta: bool = False,
) -> SplitReport:
    """Accuracy on one split of the mean softmax of ``models`` (models or ``.keras`` paths)."""
    return report_of(labels, np.argmax(ensemble_probabilities(models, images, tta=tta), axis=1))


# --- `best --ensemble`: the top trials of one study, recorded beside them -----------------

ROLE_TAG = "fer_sweep.role"
MEMBERS_TAG = "fer_sweep.ensemble_members"
FINAL_MODEL_ARTIFACT = "model/final.keras"


@dataclass(frozen=True)
class Member:
    """One model of an ensemble: what it is called, the config it trained, and where its
    final model is (an MLflow run's ``model/final.keras``, or a run folder's file)."""

    label: str
    config: TrainConfig
    run_id: str = ""  # an MLflow run that logged model/final.keras
    folder: Path | None = None  # a reproduction run's folder, holding final.keras

    def model_path(self, client, tmp: str) -> str:
        from fer_sweep.training import FINAL_MODEL

        if self.folder is not None:
            return str(self.folder / FINAL_MODEL)
        try:
            return client.download_artifacts(
                self.run_id, FINAL_MODEL_ARTIFACT, f"{tmp}/{self.run_id}"
            )
        except Exception as err:  # noqa: BLE001 - MLflow raises its own types
            raise UserError(
                f"{self.label}: no {FINAL_MODEL_ARTIFACT} in MLflow run {self.run_id} "
                f"({first_line(err)})"
            ) from None


def trial_members(client, storage, reference: str) -> list[Member]:
    """The members of ``STUDY:NUMBER``: the trial's final model, or each seed's for a trial
    of several seeds."""
    import optuna

    from fer_sweep.lifecycle import RUN_ID, SEED_RUNS
    from fer_sweep.tracking import config_from_run

    study_name, sep, number = reference.rpartition(":")
    if not sep or not study_name or not number.isdigit():
        raise UserError(f"--trial {reference!r}: expected STUDY:NUMBER (such as dropout-smoke:4)")
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise UserError(f"--trial {reference}: no study {study_name!r}") from None
    trial = next((t for t in study.trials if t.number == int(number)), None)
    if trial is None or trial.state != optuna.trial.TrialState.COMPLETE:
        raise UserError(f"--trial {reference}: no finished trial {number} in {study_name}")
    runs = list(trial.user_attrs.get(SEED_RUNS) or [trial.user_attrs.get(RUN_ID)])
    if not all(runs):
        raise UserError(f"--trial {reference}: the trial has no MLflow run to load")
    label = f"trial {number} of {study_name}"
    return [
        Member(label + (f" (seed run {k})" if len(runs) > 1 else ""), config_from_run(client, r), r)
        for k, r in enumerate(runs)
    ]


def run_member(folder: str | Path) -> Member:
    """A finished reproduction run's folder (its ``result.json`` and ``final.keras``)."""
    from fer_sweep.config import TrainConfig
    from fer_sweep.reporting._reproduction_folders import RESULT_FILE
    from fer_sweep.training import FINAL_MODEL

    folder = Path(folder)
    if not (folder / RESULT_FILE).is_file() or not (folder / FINAL_MODEL).is_file():
        raise UserError(
            f"--run {folder}: not a finished run's folder (no {RESULT_FILE} or {FINAL_MODEL})"
        )
    try:
        config = TrainConfig(**json.loads((folder / RESULT_FILE).read_text())["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"--run {folder}: {RESULT_FILE} holds no valid config ({first_line(err)})"
        ) from None
    return Member(str(folder), config, folder=folder)


@dataclass
class EnsembleResult:
    """An evaluated ensemble: its members, how each image was viewed, its PrivateTest."""

    members: list[Member]
    tta: str
    report: SplitReport
    images: int  # PrivateTest images evaluated
    run_id: str  # the ensemble's own MLflow run
    trials: list[int] = field(default_factory=list)  # `best --ensemble`: the study's trials

    def describe(self) -> str:
        return (
            f"ensemble of {', '.join(m.label for m in self.members)} (final models, "
            f"{_how(self.tta, self.members)}): PrivateTest {100 * self.report.accuracy:.2f} % "
            f"on {self.images} images, MLflow run {self.run_id}"
        )


def _how(tta: str, members: Sequence[Member]) -> str:
    if tta == "ten_crop":
        cropped = sum(1 for m in members if m.config.crop)
        return f"mean softmax, {cropped} of {len(members)} over their ten crops" + (
            ", the others with their mirror" if cropped < len(members) else ""
        )
    return "mean softmax with flip TTA" if tta == "flip" else "mean softmax"


def evaluate_ensemble(
    client,
    members: Sequence[Member],
    dataset,
    *,
    tta: str = "none",
    experiment: str = "ensembles",
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    artifact_root: Path | None = None,
) -> EnsembleResult:
    """Evaluate the mean softmax of ``members`` on PrivateTest once and record it as its own
    MLflow run (in ``experiment``, under ``parent_run_id`` if given).

    PrivateTest is the split the members were scored on: all of it, or a budget's subset
    drawn with the members' data seed, which must then be the same for all of them.
    """
    import tempfile

    from fer_sweep import metric_names as names
    from fer_sweep.data import stratified_subset
    from fer_sweep.fer2013 import EMOTIONS
    from fer_sweep.tracking import open_run

    if not members:
        raise UserError("an ensemble needs at least one member")
    if tta not in TTA_CHOICES:
        raise UserError(f"--tta {tta}: unknown (known: {', '.join(TTA_CHOICES)})")
    split = {(m.config.subset, m.config.data_seed if m.config.subset else 0) for m in members}
    if len(split) > 1:
        raise UserError(
            "the members were scored on different PrivateTest images (subset, seed: "
            f"{sorted(split)}); an ensemble needs one"
        )
    subset, seed = split.pop()
    data = stratified_subset(dataset, subset, seed=seed) if subset else dataset
    images, labels = data.arrays("PrivateTest")
    with tempfile.TemporaryDirectory(prefix="fer-sweep-ensemble-") as tmp:
        paths = [m.model_path(client, tmp) for m in members]
        probs = ensemble_probabilities(
            paths, images, tta=tta, crops=[m.config.crop for m in members]
        )
    variant = (
        "ensemble" + {"none": "", "flip": predictions.TTA, "ten_crop": predictions.TEN_CROP}[tta]
    )
    scored = predictions.for_dataset(data, ("PrivateTest",))
    scored.splits["PrivateTest"].add(variant, probs)
    report = report_of(labels, np.argmax(probs, axis=1))
    how = _how(tta, members)
    name = f"ensemble of {len(members)}" + (
        "" if tta == "none" else f" + {tta.replace('_', '-')} TTA"
    )
    note = (
        f"PrivateTest {100 * report.accuracy:.2f} %: the {how} of the final models of "
        + "; ".join(m.label for m in members)
        + "."
    )
    all_tags = {
        ROLE_TAG: "ensemble",
        MEMBERS_TAG: ",".join(m.run_id or str(m.folder) for m in members),
        "fer_sweep.ensemble_tta": tta,
        "mlflow.note.content": note,
        **(tags or {}),
    }
    with open_run(
        client,
        experiment=experiment,
        run_name=name,
        tags=all_tags,
        parent_run_id=parent_run_id,
        artifact_root=artifact_root,
    ) as run:
        values = {names.PRIVATE_FINAL: report.accuracy}
        for emotion, acc in zip(EMOTIONS, report.per_class, strict=True):
            if acc is not None:  # a class the split lacks has no accuracy (n/a)
                values[names.per_class("final", emotion)] = acc
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in values.items()]  # once: step 0
        run.safely("metrics", client.log_batch, run.id, metrics=metrics)
        run.safely(
            "confusion matrix",
            client.log_dict,
            run.id,
            {"labels": list(EMOTIONS), **report.__dict__},
            "evaluation/confusion_ensemble.json",
        )
        with tempfile.TemporaryDirectory(prefix="fer-sweep-ensemble-") as tmp:
            path = predictions.save(scored, Path(tmp) / predictions.FILE)
            run.safely("predictions", client.log_artifact, run.id, str(path), "evaluation")
    return EnsembleResult(list(members), tta, report, len(labels), run.id)


def evaluate_top_trials(
    client,
    study: optuna.Study,
    rows: Sequence,
    dataset,
    *,
    tta: bool = False,
    artifact_root: Path | None = None,
) -> EnsembleResult:
    """``best --ensemble``: the ensemble of ranked ``rows`` (one study's best trials), recorded
    under the study's run, beside the trials (:func:`evaluate_ensemble`)."""
    from fer_sweep.tracking import STUDY_RUN_ATTR, config_from_run

    if not rows:
        raise UserError(f"study {study.study_name} has no finished trial to ensemble")
    missing = [r.trial for r in rows if not r.run_id]
    if missing:
        raise UserError(f"trials {missing} of {study.study_name} have no MLflow run to load")
    members = [
        Member(f"trial {r.trial}", config_from_run(client, r.run_id), r.run_id) for r in rows
    ]
    result = evaluate_ensemble(
        client,
        members,
        dataset,
        tta="flip" if tta else "none",
        experiment=study.study_name,
        parent_run_id=study.user_attrs.get(STUDY_RUN_ATTR),
        tags={"optuna.study": study.study_name},
        artifact_root=artifact_root,
    )
    result.trials = [r.trial for r in rows]
    return result
