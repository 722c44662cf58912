"""The augmentation warp and the training batches: semantics, determinism, every backend."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from fer_sweep.config import load_config
from fer_sweep.model import draw_affine
from fer_sweep.model._augment import AffineAugment, warp
from fer_sweep.training._pipeline import EpochBatches, epoch_rng


def _faces(n: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images with a left-right asymmetric structure, so a flip or rotation shows."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 40, (n, 48, 48), dtype=np.uint8)
    x[:, 10:38, 4:14] = 250  # a bright bar on the left
    return x, rng.integers(0, 7, n)


def _warp(x: np.ndarray, config, seed: int = 0, fill_mode: str = "nearest") -> np.ndarray:
    affine = draw_affine(np.random.default_rng(seed), len(x), 48, config)
    out = warp(
        keras.ops.convert_to_tensor(x[..., None].astype("float32")),
        keras.ops.convert_to_tensor(affine),
        fill_mode,
    )
    return keras.ops.convert_to_numpy(out)[..., 0]


def test_an_epoch_is_every_image_once_as_uint8_batches_with_their_maps():
    x, y = _faces(30)
    batches = EpochBatches(x, y, load_config(batch_size=8), start_epoch=0)
    assert batches.steps_per_epoch == 4
    seen = []
    for i in range(4):
        inputs, labels = batches.batch(i)
        assert inputs["image"].dtype == np.uint8 and inputs["image"].shape[1:] == (48, 48, 1)
        assert inputs["affine"].shape == (len(labels), 6)
        seen += [int(v) for v in inputs["image"].reshape(len(labels), -1).sum(1)]
    assert sorted(seen) == sorted(int(v) for v in x.reshape(30, -1).sum(1))
    assert len(batches.batch(3)[1]) == 6  # the last batch is the remainder


def test_batches_depend_on_seed_and_epoch_only():
    x, y = _faces(32)
    config = load_config(batch_size=8, seed=3)
    from_start = EpochBatches(x, y, config, start_epoch=0)
    resumed = EpochBatches(x, y, config, start_epoch=2)  # a run resumed after epoch 2
    for step in range(4):
        a, la = from_start.batch(2 * 4 + step)  # epoch 3 of the uninterrupted run
        b, lb = resumed.batch(step)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["affine"], b["affine"])
        np.testing.assert_array_equal(la, lb)
    epoch1, epoch2 = from_start.batch(0), from_start.batch(4)
    assert not np.array_equal(epoch1[0]["image"], epoch2[0]["image"])
    other = EpochBatches(x, y, config.replace(seed=4), start_epoch=0).batch(0)
    assert not np.array_equal(epoch1[0]["affine"], other[0]["affine"])


def test_flip_only_mirrors_about_half_the_images():
    x, _ = _faces(64)
    out = _warp(x, load_config(rotation=0.0, zoom=0.0))
    same = [np.allclose(o, i, atol=1e-3) for o, i in zip(out, x, strict=True)]
    mirrored = [np.allclose(o, i[:, ::-1], atol=1e-3) for o, i in zip(out, x, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 16 <= sum(mirrored) <= 48


def test_no_augmentation_is_the_identity():
    x, _ = _faces()
    for config in (load_config(rotation=0.0, zoom=0.0, hflip=False), load_config(augment=False)):
        np.testing.assert_allclose(_warp(x, config), x, atol=1e-3)


def test_rotation_and_zoom_change_images_within_bounds():
    x, _ = _faces()
    out = _warp(x, load_config(hflip=False), seed=5)
    diff = np.abs(out - x).reshape(len(x), -1).mean(1)
    assert (diff > 0.1).all()  # every image moved
    # +-10 degrees and +-10 % zoom keep the bar in the left half of the image.
    assert (out[:, 10:38, 4:14].mean((1, 2)) > out[:, 10:38, 34:44].mean((1, 2))).all()
    big = _warp(x, load_config(hflip=False, rotation=90.0, zoom=0.0), seed=5)
    assert np.abs(big - x).mean() > np.abs(out - x).mean()


def test_the_layer_warps_in_training_only():
    x, _ = _faces(4)
    images = x[..., None]
    affine = draw_affine(np.random.default_rng(0), 4, 48, load_config(hflip=False))
    layer = AffineAugment()
    plain = keras.ops.convert_to_numpy(layer(images, affine, training=False))
    np.testing.assert_array_equal(plain, images.astype("float32"))
    warped = keras.ops.convert_to_numpy(layer(images, affine, training=True))
    assert np.abs(warped - images).mean() > 0.1
    off = keras.ops.convert_to_numpy(AffineAugment(enabled=False)(images, affine, training=True))
    np.testing.assert_array_equal(off, images.astype("float32"))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="compares with TensorFlow")
@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
def test_the_warp_matches_tensorflows_projective_transform(fill_mode):
    import tensorflow as tf

    x = np.random.default_rng(0).integers(0, 256, (16, 48, 48, 1)).astype("float32")
    # Large angles and zooms reach far outside the image, where the fill modes differ.
    config = load_config(rotation=45.0, zoom=0.5, fill_mode=fill_mode)
    affine = draw_affine(np.random.default_rng(1), 16, 48, config)
    ours = keras.ops.convert_to_numpy(warp(tf.constant(x), tf.constant(affine), fill_mode))
    transforms = np.concatenate([affine, np.zeros((16, 2), "float32")], axis=1)
    ref = tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=[48, 48],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
    ).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-3)


_ON_BACKEND = """
import json, sys
import numpy as np, keras
from fer_sweep.model._augment import warp
from fer_sweep.config import load_config
from fer_sweep.training._pipeline import EpochBatches
x = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
inputs, _ = EpochBatches(x, np.zeros(6, int), load_config(batch_size=6, seed=11),
                         start_epoch=3).batch(0)
out = warp(keras.ops.cast(inputs["image"], "float32"), inputs["affine"])
print(json.dumps({"backend": keras.backend.backend(), "tf": "tensorflow" in sys.modules,
                  "out": keras.ops.convert_to_numpy(out).tolist()}))
"""


def _warp_on(backend: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    prelude = "from fer_sweep.backend import keep_tensorflow_out; keep_tensorflow_out()\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + _ON_BACKEND],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)")
def test_same_seed_and_epoch_give_the_same_augmented_batch_on_jax_and_tensorflow():
    jax_run, tf_run = _warp_on("jax"), _warp_on("tensorflow")
    assert (jax_run["backend"], tf_run["backend"]) == ("jax", "tensorflow")
    assert not jax_run["tf"]  # the JAX process never loaded TensorFlow
    np.testing.assert_allclose(np.array(jax_run["out"]), np.array(tf_run["out"]), atol=1e-3)


def test_epoch_streams_are_independent():
    a = epoch_rng(0, 1, 0).random(4)
    assert not np.allclose(a, epoch_rng(0, 1, 1).random(4))
    assert not np.allclose(a, epoch_rng(0, 2, 0).random(4))
    np.testing.assert_array_equal(a, epoch_rng(0, 1, 0).random(4))
