"""The benchmark's code path on tiny sizes, and the augmentation semantics of the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from fer_sweep.bench import render, run_benchmark
from fer_sweep.config import load_config
from fer_sweep.pipeline import augment_batch, eval_batches, train_batches


def _faces(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images with a left-right asymmetric structure, so a flip or rotation shows."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (n, 48, 48), dtype=np.uint8)
    x[:, 10:38, 4:14] = 250  # a bright bar on the left
    return x, rng.integers(0, 7, n)


def _batches(ds) -> list[np.ndarray]:
    return [xb.numpy() for xb, _ in ds]


def test_train_batches_shapes_range_and_labels():
    x, y = _faces()
    config = load_config(batch_size=8)
    seen = []
    for xb, yb in train_batches(x, y, config):
        assert xb.shape == (8, 48, 48, 1) and xb.dtype == tf.float32
        assert float(tf.reduce_min(xb)) >= 0.0 and float(tf.reduce_max(xb)) <= 1.0
        seen += yb.numpy().tolist()
    assert sorted(seen) == sorted(y.tolist())


def test_rescale_off_keeps_pixel_scale():
    x, y = _faces()
    config = load_config(batch_size=32, rescale=False, augment=False)
    xb = _batches(train_batches(x, y, config))[0]
    assert xb.max() > 200 and sorted(xb.reshape(32, -1).sum(1)) == pytest.approx(
        sorted(x.reshape(32, -1).sum(1).astype(float))
    )


def test_same_seed_repeats_and_epochs_differ():
    x, y = _faces()
    config = load_config(batch_size=8, seed=3)
    ds = train_batches(x, y, config)
    first, second = _batches(ds), _batches(ds)
    again = _batches(train_batches(x, y, config))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other = _batches(train_batches(x, y, config.replace(seed=4)))
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_flip_only_mirrors_about_half_the_images():
    x, _ = _faces(64)
    xf = tf.constant(x[..., None].astype("float32") / 255.0)
    config = load_config(rotation=0.0, zoom=0.0)
    out = augment_batch(xf, config, tf.constant([0, 1], tf.int64)).numpy()
    same = [np.allclose(o, i, atol=1e-5) for o, i in zip(out, xf.numpy(), strict=True)]
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-5) for o, i in zip(out, xf.numpy(), strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 16 <= sum(mirrored) <= 48


def test_no_augmentation_is_identity():
    x, _ = _faces()
    xf = tf.constant(x[..., None].astype("float32") / 255.0)
    config = load_config(rotation=0.0, zoom=0.0, hflip=False)
    out = augment_batch(xf, config, tf.constant([0, 1], tf.int64)).numpy()
    np.testing.assert_allclose(out, xf.numpy(), atol=1e-5)


def test_rotation_and_zoom_change_images_within_bounds():
    x, _ = _faces()
    xf = tf.constant(x[..., None].astype("float32") / 255.0)
    config = load_config(hflip=False)
    out = augment_batch(xf, config, tf.constant([5, 6], tf.int64)).numpy()
    diff = np.abs(out - xf.numpy()).reshape(len(x), -1).mean(1)
    assert (diff > 1e-3).all()  # every image moved
    # +-10 degrees and +-10 % zoom keep the bar in the left half of the image.
    assert (out[:, 10:38, 4:14].mean((1, 2, 3)) > out[:, 10:38, 34:44].mean((1, 2, 3))).all()
    big = augment_batch(xf, load_config(hflip=False, rotation=90.0, zoom=0.0),
                        tf.constant([5, 6], tf.int64)).numpy()  # fmt: skip
    assert np.abs(big - xf.numpy()).mean() > np.abs(out - xf.numpy()).mean()


def test_augment_off_switch_and_eval_batches_are_plain():
    x, y = _faces()
    config = load_config(batch_size=32, augment=False)
    train = _batches(train_batches(x, y, config))[0]
    assert sorted(train.reshape(32, -1).sum(1)) == pytest.approx(
        sorted((x / 255.0).reshape(32, -1).sum(1)), rel=1e-5
    )
    xb, yb = next(iter(eval_batches(x, y, config, batch_size=32)))
    np.testing.assert_allclose(xb.numpy()[..., 0], x / 255.0, rtol=1e-6)
    assert yb.numpy().tolist() == y.tolist()


@pytest.mark.slow
def test_benchmark_code_path_on_tiny_sizes(fer_csv, tmp_path):
    result = run_benchmark(data=fer_csv, arch="A", quick=True, out_dir=tmp_path, rounds=1, steps=3)
    for part in ("train", "eval"):
        for who in ("reference", "project"):
            assert result[part][who]["median"] > 0
        assert result[part]["ratio"] > 0
    assert result["data"]["parse_s"] > 0 and result["data"]["cache_load_s"] >= 0
    o = result["overhead"]
    assert o["wall_s"] >= o["fit_s"] > 0 and 0 <= o["pct_of_quick_trial"] <= 100
    written = json.loads((tmp_path / result["written_to"].split("/")[-1]).read_text())
    assert written["train"]["ratio"] == result["train"]["ratio"]
    table = render(result)
    assert "train, images/s" in table and "orchestrator overhead" in table
