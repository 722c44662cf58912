"""One tracked training run end to end (1-3 epochs on a small slice), checkpoint and resume."""

import math
import threading

import keras
import pytest

from fer_sweep import metric_names as names
from fer_sweep.config import load_config
from fer_sweep.runs import open_run
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect, tracked_train
from fer_sweep.train import TrainingInterrupted, checkpoint_epoch, train

pytestmark = pytest.mark.slow


def _config(**kw):
    return load_config(
        preset="thesis-top1", **{"epochs": 3, "checkpoint_every": 1, "seed": 7, **kw}
    )


def test_tracked_run_logs_curves_params_and_artifacts(fer_dataset, tmp_path):
    client = connect(Settings.resolve().tracking_uri)
    cfg = _config(epochs=2)
    with open_run(client, experiment="test-train", config=cfg, run_name="t") as tracked:
        result = tracked_train(cfg, fer_dataset, run=tracked, workdir=tmp_path / "w",
                               progress=True)  # fmt: skip
    run_id = tracked.id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == cfg.to_params()
    assert run.data.tags["fer_sweep.dataset_sha256"] == fer_dataset.sha256
    assert run.data.tags["fer_sweep.code_version"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(run_id, names.FROM_KERAS[key])
        assert [m.step for m in history] == [1, 2], key
        assert [m.value for m in history] == pytest.approx(result.history[key])
    # The step schedule of a 2-epoch run drops after epoch 1 (fraction 0.5 of 2).
    lr = client.get_metric_history(run_id, names.LEARNING_RATE)
    assert [m.value for m in lr] == pytest.approx([1e-3, 1e-4])
    metrics = run.data.metrics
    assert metrics[names.PRIVATE_FINAL] == pytest.approx(result.test_final.accuracy)
    assert metrics[names.PRIVATE_AT_BEST] == pytest.approx(result.test_best.accuracy)
    assert metrics[names.PUBLIC_BEST] == pytest.approx(max(result.history["val_accuracy"]))
    assert metrics[names.EPOCHS_TRAINED] == 2
    assert names.per_class("final", "happy") in metrics
    files = {f.path for f in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/confusion_final.json", "evaluation/confusion_best.png",
            "evaluation/learning_curves.png"} <= files  # fmt: skip
    ckpts = {f.path for f in client.list_artifacts(run_id, "checkpoints")}
    assert {"checkpoints/final.keras", "checkpoints/best.weights.h5"} <= ckpts
    # The confusion matrix covers the whole PrivateTest split.
    n_test = len(fer_dataset.arrays("PrivateTest")[1])
    assert sum(map(sum, result.test_final.confusion)) == n_test
    assert result.test_final.accuracy == pytest.approx(
        sum(result.test_final.confusion[i][i] for i in range(7)) / n_test
    )


class _StopAt(keras.callbacks.Callback):
    def __init__(self, event, epoch):
        super().__init__()
        self.event, self.epoch = event, epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.event.set()


def test_interrupted_run_resumes_where_it_stopped(fer_dataset, tmp_path):
    cfg = _config()
    whole = train(cfg, fer_dataset, workdir=tmp_path / "whole")

    stop = threading.Event()
    with pytest.raises(TrainingInterrupted) as err:
        train(cfg, fer_dataset, workdir=tmp_path / "cut", stop_event=stop,
              callbacks=[_StopAt(stop, 2)])  # fmt: skip
    assert err.value.epoch == 2
    assert checkpoint_epoch(tmp_path / "cut") == 2
    resumed = train(cfg, fer_dataset, workdir=tmp_path / "cut")

    assert resumed.resumed_from_epoch == 2 and resumed.epochs_trained == 3
    # Same seed, same machine: the epochs before the stop repeat the uninterrupted run.
    assert resumed.history["loss"][:2] == pytest.approx(whole.history["loss"][:2], rel=1e-5)
    # The schedule continues at the same position: same rate per epoch, same update count.
    assert resumed.history["lr"] == pytest.approx(whole.history["lr"])
    assert len(resumed.history["loss"]) == 3
    iters = [
        int(keras.models.load_model(d / "final.keras").optimizer.iterations.numpy())
        for d in (tmp_path / "whole", tmp_path / "cut")
    ]
    steps = math.ceil(len(fer_dataset.arrays("Training")[1]) / cfg.batch_size)
    assert iters == [3 * steps, 3 * steps]


def test_a_checkpoint_with_another_config_is_refused(fer_dataset, tmp_path):
    from fer_sweep.errors import UserError

    cfg = _config(epochs=1)
    train(cfg, fer_dataset, workdir=tmp_path / "w")
    with pytest.raises(UserError, match="different config.*lr"):
        train(cfg.replace(lr=0.01), fer_dataset, workdir=tmp_path / "w")
