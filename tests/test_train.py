"""One tracked training run end to end (1-3 epochs on a small slice), checkpoint and resume."""

import json
import math
import shutil
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

from fer_sweep import metric_names as names
from fer_sweep.config import TrainConfig, load_config
from fer_sweep.errors import TrainingInterrupted
from fer_sweep.settings import Settings
from fer_sweep.tracking import connect, open_run, tracked_train
from fer_sweep.training import checkpoint_epoch, predictions, train

pytestmark = pytest.mark.slow


def _config(**kw):
    return load_config(
        preset="thesis-top1", **{"epochs": 3, "checkpoint_every": 1, "seed": 7, **kw}
    )


def test_tracked_run_logs_curves_params_and_artifacts(fer_dataset, tmp_path):
    client = connect(Settings.resolve().tracking_uri)
    cfg = _config(epochs=2, report_epochs=(1,))
    with open_run(client, experiment="test-train", config=cfg, run_name="t") as tracked:
        result = tracked_train(cfg, fer_dataset, run=tracked, workdir=tmp_path / "w", progress=True)
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
    assert {
        "evaluation/confusion_final.json",
        "evaluation/confusion_best.png",
        "evaluation/learning_curves.png",
    } <= files
    models = {f.path for f in client.list_artifacts(run_id, "model")}
    assert models == {"model/final.keras", "model/best.weights.h5"}
    assert set(result.files) == models | {"checkpoints/last", "evaluation/predictions.npz"}
    # Per image, final and best-epoch weights on both test splits; PrivateTest's accuracies
    # are the ones the run reports.
    assert "evaluation/predictions.npz" in files
    scored = predictions.load(result.files["evaluation/predictions.npz"])
    private = scored.split("PrivateTest")
    assert private.correct("final").mean() == pytest.approx(result.test_final.accuracy)
    assert private.correct("best").mean() == pytest.approx(result.test_best.accuracy)
    public = scored.split("PublicTest")
    assert np.array_equal(public.labels, fer_dataset.arrays("PublicTest")[1])
    assert np.array_equal(public.rows, fer_dataset.row_numbers("PublicTest"))
    assert client.list_artifacts(run_id, "checkpoints/last")
    # PrivateTest after epoch 1, for the report: logged at its epoch, never used to select.
    at_epoch = client.get_metric_history(run_id, names.PRIVATE_AT_EPOCH)
    assert [(m.step, m.value) for m in at_epoch] == [(1, result.private_at_epochs[1])]
    # The saved final model is the bare network: it classifies raw 0-255 pixels.
    final = keras.models.load_model(result.files["model/final.keras"])
    assert final.input_shape == (None, 48, 48, 1) and final.count_params() > 500_000
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


@pytest.mark.parametrize("schedule", ["step", "reduce_on_plateau"])
def test_a_resumed_run_continues_the_uninterrupted_one(fer_dataset, tmp_path, schedule):
    # A patience of 1 makes the plateau schedule act within 4 epochs, so its counters matter.
    cfg = _config(epochs=4, schedule=schedule, plateau_patience=1, step_factor=0.5, subset=128)
    whole = train(cfg, fer_dataset, workdir=tmp_path / "whole")

    stop = threading.Event()
    with pytest.raises(TrainingInterrupted) as err:
        train(
            cfg,
            fer_dataset,
            workdir=tmp_path / "cut",
            stop_event=stop,
            callbacks=[_StopAt(stop, 2)],
        )
    assert err.value.epoch == 2
    assert checkpoint_epoch(tmp_path / "cut") == 2
    resumed = train(cfg, fer_dataset, workdir=tmp_path / "cut")
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_trained == 4

    # Every epoch, the two after the resume included: same batches, same augmentation, same
    # dropout masks, same schedule position (CPU kernels are not bitwise deterministic).
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed.history[key] == pytest.approx(whole.history[key], rel=1e-4, abs=1e-5), key
    assert resumed.test_final.accuracy == pytest.approx(whole.test_final.accuracy, abs=0.01)
    iters = [
        int(
            keras.ops.convert_to_numpy(
                keras.models.load_model(d / "checkpoint" / "model.keras").optimizer.iterations
            )
        )
        for d in (tmp_path / "whole", tmp_path / "cut")
    ]
    n_train = min(cfg.subset, len(fer_dataset.arrays("Training")[1]))
    steps = math.ceil(n_train / cfg.batch_size)
    assert iters == [4 * steps, 4 * steps]


def test_a_checkpoint_with_another_config_is_refused(fer_dataset, tmp_path):
    from fer_sweep.errors import UserError

    cfg = _config(epochs=1)
    train(cfg, fer_dataset, workdir=tmp_path / "w")
    with pytest.raises(UserError, match="different config.*lr"):
        train(cfg.replace(lr=0.01), fer_dataset, workdir=tmp_path / "w")


# --- checkpoints: today's layout, damage, and the previous whole one ----------------------

REPRO = Path(__file__).resolve().parents[1] / "results" / "work" / "thesis-top1-seed0"
TODAYS_LAYOUT = {"model.keras", "state.json", "best.weights.h5"}


def test_a_checkpoint_in_todays_layout_resumes(fer_dataset, tmp_path):
    """Folders written before checkpoint.prev existed (results/work/*/checkpoint: model.keras,
    state.json, best.weights.h5 and nothing beside them) still resume."""
    from fer_sweep.training._checkpoint import restore_checkpoint

    if (REPRO / "checkpoint").is_dir():  # the reproduction's own, 80 epochs of thesis-top1
        real = tmp_path / "real"
        shutil.copytree(REPRO / "checkpoint", real / "checkpoint")
        assert {p.name for p in (real / "checkpoint").iterdir()} == TODAYS_LAYOUT
        saved = json.loads((real / "checkpoint" / "state.json").read_text())["config"]
        model, state, note = restore_checkpoint(real, TrainConfig(**saved))
        assert model is not None and state.epoch == 80 == checkpoint_epoch(real) and note == ""
    cfg = _config(epochs=2, subset=128, batch_size=32)
    train(cfg.replace(epochs=1), fer_dataset, workdir=tmp_path / "w")
    # Back to exactly today's layout: the checkpoint folder alone, nothing beside it.
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "w" / "checkpoint", old / "checkpoint")
    saved = json.loads((old / "checkpoint" / "state.json").read_text())
    saved["config"]["epochs"] = 2  # the same run, continued to 2 epochs
    (old / "checkpoint" / "state.json").write_text(json.dumps(saved))
    assert {p.name for p in (old / "checkpoint").iterdir()} == TODAYS_LAYOUT
    resumed = train(cfg, fer_dataset, workdir=old)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_trained == 2
    assert resumed.checkpoint_note == ""


def test_a_damaged_checkpoint_falls_back_to_the_previous_then_starts_afresh(
    fer_dataset, tmp_path, capfd
):
    more = _config(epochs=3, subset=128, batch_size=32)
    work = tmp_path / "w"
    stop = threading.Event()
    with pytest.raises(TrainingInterrupted):  # checkpoints after epochs 1 and 2
        train(more, fer_dataset, workdir=work, stop_event=stop, callbacks=[_StopAt(stop, 2)])
    assert checkpoint_epoch(work) == 2 and (work / "checkpoint.prev" / "model.keras").exists()
    model = work / "checkpoint" / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated
    resumed = train(more, fer_dataset, workdir=work)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_trained == 3
    assert "model.keras" in resumed.checkpoint_note and "epoch 1" in resumed.checkpoint_note
    warning = [line for line in capfd.readouterr().err.splitlines() if "passed over" in line]
    assert len(warning) == 1 and warning[0].startswith("warning:")

    # Garbage in every state.json: the run starts afresh, it is not blocked for good.
    for folder in ("checkpoint", "checkpoint.prev"):
        (work / folder / "state.json").write_text("{not json")
    assert checkpoint_epoch(work) == 0  # no bare JSON error
    again = train(more, fer_dataset, workdir=work)
    assert again.resumed_from_epoch == 0 and again.epochs_trained == 3
    assert (
        "starting from epoch 1" in again.checkpoint_note and "state.json" in again.checkpoint_note
    )


def test_a_full_disk_while_checkpointing_leaves_the_previous_checkpoint_whole(
    fer_dataset, tmp_path, monkeypatch
):
    """ENOSPC injected at the checkpoint's write (keras's save): the partial folder goes, the
    checkpoint before it stays readable, and the error names the cause."""
    import errno

    cfg = _config(epochs=2, subset=128, batch_size=32)
    work = tmp_path / "w"
    stop = threading.Event()
    with pytest.raises(TrainingInterrupted):
        train(cfg, fer_dataset, workdir=work, stop_event=stop, callbacks=[_StopAt(stop, 1)])
    real_save = keras.Model.save

    def full(self, path, *a, **kw):
        real_save(self, path, *a, **kw)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", full)
    with pytest.raises(OSError) as err:
        train(cfg, fer_dataset, workdir=work)
    assert err.value.errno == errno.ENOSPC
    assert not (work / "checkpoint.tmp").exists()
    monkeypatch.undo()
    assert checkpoint_epoch(work) == 1
    resumed = train(cfg, fer_dataset, workdir=work)  # once there is space again
    assert resumed.resumed_from_epoch == 1 and resumed.checkpoint_note == ""
