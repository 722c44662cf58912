"""Per-image predictions of a model on the test splits, in one small documented file.

A finished trial logs ``evaluation/predictions.npz`` to MLflow, a reproduction run writes
``predictions.npz`` beside its ``result.json``, and ``best --ensemble`` logs its ensemble's;
``python -m fer_sweep predictions backfill FOLDER`` writes one for a reproduction run that
finished before the file existed. Paired tests (:mod:`fer_sweep.reporting.stats`) read two of them.

The file is numpy's compressed ``.npz`` of plain arrays (``np.load`` without pickles):

============================  =========  ==================================================
key                           dtype      what
============================  =========  ==================================================
``format``                    str        ``fer-sweep predictions 1``
``classes``                   str (7,)   the emotions; a label or class is an index into it
``dataset_sha256``            str        the dataset's content hash (its ``sha256``)
``splits``, ``variants``      str (k,)   the splits scored, the weights scored on each
``SPLIT/row``                 int32 (n)  each image's row in the dataset file, 0-based
``SPLIT/label``               uint8 (n)  its true class
``SPLIT/VARIANT/pred``        uint8 (n)  the predicted class (argmax of full-precision probs)
``SPLIT/VARIANT/prob``        float16    softmax probabilities ``(n, 7)``
============================  =========  ==================================================

Variants are named for the weights: ``final`` (the last epoch), ``best`` (the
best-PublicTest epoch), ``final+tta`` and ``best+tta`` (each image averaged with its
mirror), ``final+tencrop`` and ``best+tencrop`` (a network that sees a centre crop,
averaged over the ten crops of torchvision's TenCrop), ``ensemble`` / ``ensemble+tta``.
Rows are the CSV's data rows in file order (the header not counted), so two files scored
the same images exactly when their rows agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_sweep.errors import UserError

FORMAT = "fer-sweep predictions 1"
FILE = "predictions.npz"
ARTIFACT = f"evaluation/{FILE}"  # where a trial's (or an ensemble's) file lies in MLflow
TEST_SPLITS = ("PublicTest", "PrivateTest")
TTA = "+tta"  # each image averaged with its mirror
TEN_CROP = "+tencrop"  # a network that sees a centre crop: averaged over torchvision's TenCrop


@dataclass
class SplitPredictions:
    """One split's images (source rows and labels) and each variant's predictions."""

    rows: np.ndarray
    labels: np.ndarray
    pred: dict[str, np.ndarray] = field(default_factory=dict)
    prob: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, variant: str, probabilities: np.ndarray) -> None:
        """Store ``variant``'s softmax output: its argmax exactly, the probabilities as
        float16."""
        probabilities = np.asarray(probabilities)
        if probabilities.shape != (len(self.rows), 7):
            raise ValueError(
                f"{variant}: expected ({len(self.rows)}, 7), got {probabilities.shape}"
            )
        self.pred[variant] = np.argmax(probabilities, axis=1).astype(np.uint8)
        self.prob[variant] = probabilities.astype(np.float16)

    def correct(self, variant: str) -> np.ndarray:
        return self.pred[variant] == self.labels


@dataclass
class Predictions:
    """What a predictions file holds; ``source`` names where it was read from, for errors."""

    dataset_sha256: str
    splits: dict[str, SplitPredictions]
    source: str = ""

    @property
    def variants(self) -> list[str]:
        seen: dict[str, None] = {}
        for s in self.splits.values():
            seen.update(dict.fromkeys(s.pred))
        return list(seen)

    def split(self, name: str) -> SplitPredictions:
        if name not in self.splits:
            raise UserError(
                f"{self.source or 'predictions'}: no {name} predictions "
                f"(it has {', '.join(self.splits) or 'none'})"
            )
        return self.splits[name]

    def correct(self, split: str, variant: str) -> np.ndarray:
        """Per-image correctness of ``variant`` on ``split``."""
        s = self.split(split)
        if variant not in s.pred:
            raise UserError(
                f"{self.source or 'predictions'}: no {variant!r} predictions on "
                f"{split} (it has {', '.join(s.pred) or 'none'})"
            )
        return s.correct(variant)


def for_dataset(dataset, splits: Sequence[str] = TEST_SPLITS) -> Predictions:
    """An empty file for ``dataset``'s images of ``splits``, to :meth:`~SplitPredictions.add`
    variants to."""
    out = {}
    for name in splits:
        _, labels = dataset.arrays(name)
        out[name] = SplitPredictions(
            dataset.row_numbers(name).astype(np.int32), labels.astype(np.uint8)
        )
    return Predictions(dataset.sha256, out)


def save(predictions: Predictions, path: str | Path) -> Path:
    """Write ``predictions`` to ``path`` (written whole, then renamed into place)."""
    from fer_sweep.fer2013 import EMOTIONS

    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "classes": np.array(EMOTIONS),
        "dataset_sha256": np.array(predictions.dataset_sha256),
        "splits": np.array(list(predictions.splits)),
        "variants": np.array(predictions.variants),
    }
    for name, s in predictions.splits.items():
        arrays[f"{name}/row"] = s.rows.astype(np.int32)
        arrays[f"{name}/label"] = s.labels.astype(np.uint8)
        for variant in s.pred:
            arrays[f"{name}/{variant}/pred"] = s.pred[variant]
            arrays[f"{name}/{variant}/prob"] = s.prob[variant]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load(path: str | Path) -> Predictions:
    """Read a predictions file; a missing or foreign file is a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"{path}: no predictions file (write it with: python -m fer_sweep "
            "predictions backfill FOLDER)"
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["format"]) != FORMAT:
                raise UserError(f"{path}: format {str(f['format'])!r}, expected {FORMAT!r}")
            splits = {}
            for name in f["splits"].tolist():
                s = SplitPredictions(f[f"{name}/row"], f[f"{name}/label"])
                for variant in f["variants"].tolist():
                    if f"{name}/{variant}/pred" in f.files:
                        s.pred[variant] = f[f"{name}/{variant}/pred"]
                        s.prob[variant] = f[f"{name}/{variant}/prob"]
                splits[name] = s
            return Predictions(str(f["dataset_sha256"]), splits, str(path))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file, whatever numpy says
        raise UserError(f"{path}: not a predictions file ({type(err).__name__}: {err})") from None


def paired(
    a: Predictions, b: Predictions, split: str, a_variant: str, b_variant: str
) -> tuple[np.ndarray, np.ndarray]:
    """The per-image correctness of two files' variants on ``split``, checked to be the same
    images of the same dataset (a :class:`UserError` names the mismatch)."""
    sa, sb = a.split(split), b.split(split)
    if a.dataset_sha256 != b.dataset_sha256:
        raise UserError(
            f"{a.source} and {b.source} were scored on different datasets "
            f"({a.dataset_sha256[:12]} vs {b.dataset_sha256[:12]})"
        )
    if len(sa.rows) != len(sb.rows) or not np.array_equal(sa.rows, sb.rows):
        raise UserError(
            f"{a.source} and {b.source} hold different {split} images "
            f"({len(sa.rows)} and {len(sb.rows)}); a paired test needs the "
            "same ones"
        )
    return a.correct(split, a_variant), b.correct(split, b_variant)


# --- scoring models ------------------------------------------------------------------------


def crop_views(images: np.ndarray, crop: int, views: int) -> list[np.ndarray]:
    """``views`` (5 or 10) copies of ``images`` (n, 48, 48) shifted so that a network which
    sees its centre ``crop`` sees torchvision's FiveCrop / TenCrop of each: the four corners
    and the centre, then (ten) the same of the mirror. The shifts are whole pixels of at
    most the crop's margin, so the window never reaches a wrapped-around pixel."""
    from fer_sweep.model import crop_origin

    size = images.shape[1]
    origin = crop_origin(crop, size)
    far = size - crop
    corners = [(0, 0), (0, far), (far, 0), (far, far), (origin, origin)]
    sources = [images] + ([images[:, :, ::-1]] if views == 10 else [])
    return [
        np.roll(source, (origin - top, origin - left), axis=(1, 2))
        for source in sources
        for top, left in corners
    ]


def probabilities(model, images: np.ndarray, *, tta: bool | str = False, crop: int = 0):
    """Softmax outputs ``(n, 7)`` of ``model`` (a bare network) for raw images, averaged over
    test-time views: with ``tta`` true (or ``"flip"``) each image and its left-right mirror;
    ``"five_crop"`` / ``"ten_crop"`` the crops of :func:`crop_views` (a network that sees a
    centre ``crop``). The one scoring path of trials, reproduction runs and ensembles. The
    mirrors ride along in one ``predict`` call; crops are a call each, of the same shape, so
    the backend traces the network once."""
    from fer_sweep.fer2013 import INPUT_SHAPE

    x = images.reshape(-1, *INPUT_SHAPE).astype("float32")
    if tta in ("five_crop", "ten_crop"):
        if not crop:
            raise UserError(f"{tta} test-time averaging needs a network trained on crops")
        views = crop_views(x[..., 0], crop, 5 if tta == "five_crop" else 10)
        total = sum(
            np.asarray(model.predict(v[..., None], batch_size=256, verbose=0), dtype="float64")
            for v in views
        )
        return total / len(views)
    if tta:
        x = np.concatenate([x, x[:, :, ::-1]])
    probs = np.asarray(model.predict(x, batch_size=256, verbose=0), dtype="float64")
    if tta:
        probs = (probs[: len(images)] + probs[len(images) :]) / 2.0
    return probs


def score_models(
    models: Mapping[str, object],
    dataset,
    *,
    splits: Sequence[str] = TEST_SPLITS,
    tta: bool = False,
    crop: int = 0,
) -> Predictions:
    """Predictions of each named model (a bare network, or a callable that returns one, so
    weights can be swapped in between) on ``splits``; with ``tta`` also ``NAME+tta``, and for
    a network that sees a centre ``crop`` also ``NAME+tencrop``. Each model scores the
    splits' images together."""
    out = for_dataset(dataset, splits)
    images = [dataset.arrays(name)[0] for name in splits]
    ends = np.cumsum([len(x) for x in images])[:-1]
    together = np.concatenate(images)
    views = (
        [("", False)] + ([(TTA, True)] if tta else []) + ([(TEN_CROP, "ten_crop")] if crop else [])
    )
    for variant, model in models.items():
        net = model() if callable(model) and not hasattr(model, "predict") else model
        for suffix, how in views:
            probs = np.split(probabilities(net, together, tta=how, crop=crop), ends)
            for name, p in zip(splits, probs, strict=True):
                out.splits[name].add(variant + suffix, p)
    return out


def score_run(folder: str | Path, dataset) -> Path:
    """Score a finished run's ``final.keras`` and its best epoch's weights on the test splits,
    plain and with flip TTA, into ``folder/predictions.npz`` (the backfill of a run that
    finished before runs wrote the file, and every reproduction run's after training)."""
    import keras

    from fer_sweep.training._checkpoint import BEST_WEIGHTS, FINAL_MODEL

    folder = Path(folder)
    if not (folder / FINAL_MODEL).is_file():
        raise UserError(f"{folder}: no {FINAL_MODEL} (not a finished run's folder)")
    net = keras.models.load_model(folder / FINAL_MODEL)

    def best():
        if (folder / BEST_WEIGHTS).is_file():
            net.load_weights(folder / BEST_WEIGHTS)
        return net

    return save(score_models({"final": net, "best": best}, dataset, tta=True), folder / FILE)
