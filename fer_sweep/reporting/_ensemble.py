"""Ensembles of finished models: the average of their softmax outputs, optionally with flips.

An ensemble is evaluated once, on PrivateTest, like any finished model; its members are
chosen beforehand (by PublicTest, or by recipe), never by their PrivateTest accuracy. With
test-time augmentation (``tta``) each image is also classified mirrored left-right (the
training augmentation flips faces, so the mirror is as valid a face) and the two outputs
are averaged. Works on any Keras backend: the models are the saved bare networks, which
take raw 0-255 pixels.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
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


def ensemble_probabilities(
    models: Sequence[keras.Model | str | Path], images: np.ndarray, *, tta: bool = False
) -> np.ndarray:
    """The mean softmax ``(n, 7)`` of ``models`` (models or ``.keras`` paths) on ``images``.

    Models given as paths are loaded one at a time, so an ensemble of many never holds more
    than one in memory.
    """
    if not models:
        raise ValueError("an ensemble needs at least one model")
    total = np.zeros((len(images), 7))
    for member in models:
        model = member if isinstance(member, keras.Model) else keras.models.load_model(member)
        total += probabilities(model, images, tta=tta)
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


@dataclass
class EnsembleResult:
    """An evaluated ensemble: its members (trial numbers and runs) and its PrivateTest."""

    study: str
    trials: list[int]
    run_ids: list[str]
    tta: bool
    report: SplitReport
    images: int  # PrivateTest images evaluated
    run_id: str  # the ensemble's own MLflow run

    def describe(self) -> str:
        how = "mean softmax with flip TTA" if self.tta else "mean softmax"
        members = ", ".join(str(t) for t in self.trials)
        return (
            f"ensemble of study {self.study}'s trials {members} (final models, {how}): "
            f"PrivateTest {100 * self.report.accuracy:.2f} % on {self.images} images, "
            f"MLflow run {self.run_id}"
        )


def evaluate_top_trials(
    client,
    study: optuna.Study,
    rows: Sequence,
    dataset,
    *,
    tta: bool = False,
    artifact_root: Path | None = None,
) -> EnsembleResult:
    """Evaluate the ensemble of ranked ``rows`` (one study's best trials) on PrivateTest once,
    and record it as its own MLflow run under the study's run, beside the trials.

    The models are the trials' logged ``model/final.keras``; PrivateTest is the split the
    trials were evaluated on (the budget's subset, drawn with the trials' seed).
    """
    import tempfile

    from fer_sweep import metric_names as names
    from fer_sweep.data import stratified_subset
    from fer_sweep.fer2013 import EMOTIONS
    from fer_sweep.tracking import STUDY_RUN_ATTR, config_from_run, open_run

    if not rows:
        raise UserError(f"study {study.study_name} has no finished trial to ensemble")
    missing = [r.trial for r in rows if not r.run_id]
    if missing:
        raise UserError(f"trials {missing} of {study.study_name} have no MLflow run to load")
    configs = [config_from_run(client, r.run_id) for r in rows]
    split = {(c.subset, c.seed) for c in configs}
    if len(split) > 1:
        raise UserError(
            f"the trials were evaluated on different PrivateTest subsets "
            f"(subset, seed: {sorted(split)}); an ensemble needs one"
        )
    subset, seed = split.pop()
    data = stratified_subset(dataset, subset, seed=seed) if subset else dataset
    images, labels = data.arrays("PrivateTest")
    with tempfile.TemporaryDirectory(prefix="fer-sweep-ensemble-") as tmp:
        paths = []
        for r in rows:
            try:
                paths.append(
                    client.download_artifacts(r.run_id, FINAL_MODEL_ARTIFACT, f"{tmp}/{r.run_id}")
                )
            except Exception as err:  # noqa: BLE001 - MLflow raises its own types
                raise UserError(
                    f"trial {r.trial}: no {FINAL_MODEL_ARTIFACT} in MLflow run "
                    f"{r.run_id} ({first_line(err)})"
                ) from None
        probs = ensemble_probabilities(paths, images, tta=tta)
    scored = predictions.for_dataset(data, ("PrivateTest",))
    scored.splits["PrivateTest"].add("ensemble" + (predictions.TTA if tta else ""), probs)
    report = report_of(labels, np.argmax(probs, axis=1))
    trials = [r.trial for r in rows]
    name = f"ensemble of trials {', '.join(map(str, trials))}" + (" + flip TTA" if tta else "")
    note = (
        f"PrivateTest {100 * report.accuracy:.2f} %: the mean softmax of the final models "
        f"of trials {', '.join(map(str, trials))} (chosen by PublicTest)"
        + (", each image also mirrored" if tta else "")
        + "."
    )
    tags = {
        ROLE_TAG: "ensemble",
        MEMBERS_TAG: ",".join(r.run_id for r in rows),
        "fer_sweep.ensemble_tta": str(tta),
        "optuna.study": study.study_name,
        "mlflow.note.content": note,
    }
    with open_run(
        client,
        experiment=study.study_name,
        run_name=name,
        tags=tags,
        parent_run_id=study.user_attrs.get(STUDY_RUN_ATTR),
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
    return EnsembleResult(
        study.study_name, trials, [r.run_id for r in rows], tta, report, len(labels), run.id
    )
