"""The per-image predictions file: its format, its rows, and the checks before a pairing."""

from __future__ import annotations

import numpy as np
import pytest

from fer_sweep.data import Dataset, stratified_subset
from fer_sweep.errors import UserError
from fer_sweep.training import predictions


def _dataset(n_per_split: int = 20, sha: str = "ab" * 32) -> Dataset:
    rng = np.random.default_rng(0)
    n = 3 * n_per_split
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    labels = (np.arange(n) % 7).astype(np.uint8)
    split = np.repeat(np.arange(3, dtype=np.uint8), n_per_split)
    return Dataset(images, labels, split, source="memory", sha256=sha)


class _LeftSide:
    """A stand-in network: its softmax depends on the left half of the image only, so a
    mirrored image scores differently."""

    def predict(self, x, batch_size=256, verbose=0):
        left = x[:, :, :24, 0].reshape(len(x), -1)
        logits = np.stack([left[:, k::7].mean(axis=1) / 40 for k in range(7)], axis=1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_file_round_trips_with_its_documented_keys_and_dtypes(tmp_path):
    ds = _dataset()
    scored = predictions.score_models({"final": _LeftSide()}, ds, tta=True)
    path = predictions.save(scored, tmp_path / predictions.FILE)
    with np.load(path, allow_pickle=False) as f:
        assert str(f["format"]) == predictions.FORMAT and len(f["classes"]) == 7
        assert f["PrivateTest/row"].dtype == np.int32
        assert f["PrivateTest/label"].dtype == np.uint8
        assert f["PrivateTest/final/pred"].dtype == np.uint8
        assert f["PrivateTest/final+tta/prob"].dtype == np.float16
        assert f["PrivateTest/final/prob"].shape == (20, 7)
    back = predictions.load(path)
    assert back.variants == ["final", "final+tta"] and back.dataset_sha256 == ds.sha256
    # PrivateTest is the third split: its images are rows 40-59 of the source.
    assert back.split("PrivateTest").rows.tolist() == list(range(40, 60))
    for name in predictions.TEST_SPLITS:
        images, labels = ds.arrays(name)
        probs = predictions.probabilities(_LeftSide(), images)
        assert np.array_equal(back.split(name).pred["final"], probs.argmax(axis=1))
        assert np.array_equal(back.split(name).labels, labels)
    # TTA is the mean of the image's and its mirror's softmax: here they differ.
    images, _ = ds.arrays("PrivateTest")
    mirrored = predictions.probabilities(_LeftSide(), images[:, :, ::-1])
    plain = predictions.probabilities(_LeftSide(), images)
    assert np.allclose(
        predictions.probabilities(_LeftSide(), images, tta=True), (plain + mirrored) / 2
    )
    assert not np.allclose(plain, mirrored)


def test_a_subset_keeps_the_source_rows_of_its_images():
    ds = _dataset(n_per_split=30)
    sub = stratified_subset(ds, 10, seed=3)
    rows = sub.row_numbers("PrivateTest")
    assert len(rows) == 10 and set(rows) <= set(range(60, 90))
    images, labels = sub.arrays("PrivateTest")
    assert np.array_equal(ds.images[rows], images) and np.array_equal(ds.labels[rows], labels)
    scored = predictions.for_dataset(sub)
    assert np.array_equal(scored.split("PrivateTest").rows, rows)


def test_pairing_refuses_different_images_and_datasets(tmp_path):
    ds = _dataset(n_per_split=30)
    whole = predictions.score_models({"final": _LeftSide()}, ds)
    whole.source = "a.npz"
    other = predictions.score_models({"final": _LeftSide()}, stratified_subset(ds, 10))
    other.source = "b.npz"
    with pytest.raises(UserError, match="different PrivateTest images"):
        predictions.paired(whole, other, "PrivateTest", "final", "final")
    foreign = predictions.score_models({"final": _LeftSide()}, _dataset(30, sha="cd" * 32))
    with pytest.raises(UserError, match="different datasets"):
        predictions.paired(whole, foreign, "PrivateTest", "final", "final")
    a, b = predictions.paired(whole, whole, "PrivateTest", "final", "final")
    assert a.shape == (30,) and np.array_equal(a, b)
    with pytest.raises(UserError, match="no 'best' predictions"):
        whole.correct("PrivateTest", "best")


def test_a_missing_or_foreign_file_is_one_user_error(tmp_path):
    with pytest.raises(UserError, match="no predictions file"):
        predictions.load(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a predictions file"):
        predictions.load(tmp_path / "junk.npz")
