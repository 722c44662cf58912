"""Seconds per epoch of training presets on this machine, measured side by side.

For each preset: its trainable parameters; training images/s at steady state, through the
trainer exactly as a trial builds it (:func:`fer_sweep.training.project_fitter`: the
training model with its augmentation, erasing and mixing, the compiled optimizer and loss);
evaluation images/s of the bare network, plain and, for a network trained on crops, over its
ten crops. Training rounds alternate between the presets, so every preset sees the same load
(the first round is warm-up), and the medians make the figures:

- an epoch: all 28,709 Training images at the training rate, then PublicTest (3,589) once
  at the evaluation rate, as the trainer validates each epoch;
- a full run: its epochs, then the final scoring of both test splits with the final and the
  best epoch's weights, plain and (with a crop) over ten crops.

Run from the repository root::

    python -m benchmarks.presets --preset beyond-vgg --preset beyond-resnet18 \\
        --preset thesis-top1 [--rounds 4] [--steps 6] [--data PATH]
"""

from __future__ import annotations

import json
import math
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from fer_sweep.cli import DataOpt, run_app
from fer_sweep.errors import UserError

TRAINING_IMAGES = 28_709
TEST_IMAGES = 3_589  # PublicTest, and PrivateTest


def measure(
    presets: list[str], data: Path, *, rounds: int, steps: int, skip: int = 2
) -> dict[str, Any]:
    """The figures above for each of ``presets``, on the dataset at ``data``."""
    import keras
    import numpy as np

    from benchmarks.bench import _alternate, _tile
    from fer_sweep.config import load_config
    from fer_sweep.data import load_dataset
    from fer_sweep.model import bare_network, trainable_parameters
    from fer_sweep.training import predictions, project_fitter

    dataset = load_dataset(data)
    x_all, y_all = dataset.arrays("Training")
    x_eval = dataset.arrays("PublicTest")[0][:512]
    fitters, evals, out = {}, {}, {}
    for name in presets:
        config = load_config(preset=name)
        bs = config.batch_size
        x, y = _tile(x_all, y_all, (steps + skip + 2) * bs)
        fit, model = project_fitter(config, x, y, steps_per_epoch=math.ceil(TRAINING_IMAGES / bs))
        fitters[name] = lambda fit=fit: fit(steps + skip, skip)
        net = bare_network(model)
        evals[name] = (net, config)
        out[name] = {
            "network": config.network,
            "parameters": trainable_parameters(net),
            "batch_size": bs,
            "epochs": config.epochs,
        }
    trained = _alternate(fitters, rounds, ratio=(presets[0], presets[-1]))
    for name, (net, config) in evals.items():
        probe = {}
        for how in ["plain"] + (["ten_crop"] if config.crop else []):
            tta = how if how != "plain" else False
            predictions.probabilities(net, x_eval[:64], tta=tta, crop=config.crop)  # tracing
            start = time.perf_counter()
            predictions.probabilities(net, x_eval, tta=tta, crop=config.crop)
            probe[how] = len(x_eval) / (time.perf_counter() - start)
        train_rate = trained[name]["median"]
        epoch = TRAINING_IMAGES / train_rate + TEST_IMAGES / probe["plain"]
        final = 2 * 2 * TEST_IMAGES * sum(1 / r for r in probe.values())
        out[name].update(
            train_images_per_s=train_rate,
            train_rounds=trained[name]["rounds"],
            eval_images_per_s=probe,
            seconds_per_epoch=epoch,
            full_run_hours=(config.epochs * epoch + final) / 3600,
        )
    return {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "backend": keras.backend.backend(),
        "rounds": rounds,
        "steps": steps,
        "numpy": np.__version__,
        "presets": out,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"measured {result['measured']} on {result['backend']}, {result['rounds']} rounds of "
        f"{result['steps']} batches each, alternating (medians)",
        "| preset | network | parameters | batch | train images/s | eval images/s "
        "(plain / ten crops) | s / epoch | epochs | full run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in result["presets"].items():
        ev = p["eval_images_per_s"]
        evals = " / ".join(f"{ev[k]:.0f}" for k in ("plain", "ten_crop") if k in ev)
        lines.append(
            f"| {name} | {p['network']} | {p['parameters']:,} | {p['batch_size']} | "
            f"{p['train_images_per_s']:.1f} | {evals} | {p['seconds_per_epoch']:.0f} | "
            f"{p['epochs']} | {p['full_run_hours']:.1f} h |"
        )
    return "\n".join(lines)


def presets_command(
    preset: Annotated[list[str], typer.Option(help="a preset of fer_sweep (repeat)")],
    data: DataOpt = None,
    rounds: Annotated[int, typer.Option(min=1, help="measured rounds (after one warm-up)")] = 4,
    steps: Annotated[int, typer.Option(min=2, help="timed batches a round")] = 6,
    out: Annotated[Path, typer.Option(help="folder for the JSON result")] = Path(
        "benchmarks/results"
    ),
) -> None:
    """Seconds per epoch and per full run of presets, measured side by side."""
    from fer_sweep.config import PRESETS
    from fer_sweep.data import resolve_data_path

    for name in preset:
        if name not in PRESETS:
            raise UserError(f"--preset {name}: unknown (known: {', '.join(PRESETS)})")
    result = measure(preset, resolve_data_path(data), rounds=rounds, steps=steps)
    out.mkdir(parents=True, exist_ok=True)
    stamp = result["measured"].replace(":", "").replace("-", "")[:15]
    (out / f"presets-{stamp}.json").write_text(json.dumps(result, indent=1))
    print(render(result))
    medians = {n: statistics.median(p["train_rounds"]) for n, p in result["presets"].items()}
    print("training rounds (images/s):", json.dumps(medians))


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(presets_command)
    run_app(app, "python -m benchmarks.presets", argv)


if __name__ == "__main__":
    main()
