"""thesis-top3's printed learning rate against 1e-3: the first epochs of both, side by side.

Table 5.6 prints the third model's Adam learning rate in a cell that the text extraction
garbled (``1 / 2 / 1 1, / decay 0.001, ...``); the preset reads it as 1e-1. Before 100 epochs
of this CPU go to that reading, train the first epochs of the recipe as printed and with
lr 1e-3 on all training images (the time decay does not depend on the run's length, so a
short run is exactly the start of the full one), then run this script on what MLflow logged:

    for lr in 0.1 0.001; do
      python -m fer_sweep train --preset thesis-top3 --epochs 6 --set lr=$lr \
        --data ../shared/data/fer2013.csv.gz --experiment lr-check-thesis-top3 --no-progress
    done
    python benchmarks/lr_check.py --experiment lr-check-thesis-top3 --out results

It writes ``OUT/thesis-top3-lr-check.csv`` (one row per run and epoch, committed so that the
evidence outlives ``mlruns/``) and ``OUT/thesis-top3-lr-check.png`` (the curves), and prints
the markdown table that ``results/thesis-reproduction-notes.md`` carries.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

from fer_sweep import metric_names as m

CURVES = (m.TRAIN_ACCURACY, m.PUBLIC_ACCURACY, m.TRAIN_LOSS, m.PUBLIC_LOSS, m.LEARNING_RATE)


def collect(client: MlflowClient, experiment: str) -> list[dict]:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: no MLflow experiment named {experiment!r}")
    rows = []
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]):
        lr = run.data.params.get("lr")
        history = {k: client.get_metric_history(run.info.run_id, k) for k in CURVES}
        for point in history[m.TRAIN_ACCURACY]:
            epoch = point.step
            row = {"run_id": run.info.run_id, "status": run.info.status, "lr": lr, "epoch": epoch}
            for key, values in history.items():
                found = [p.value for p in values if p.step == epoch]
                row[key] = found[-1] if found else ""
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| lr | epoch | train accuracy | PublicTest accuracy | train loss | PublicTest loss "
        "| lr at epoch start |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {float(r['lr']):g} | {r['epoch']} | {100 * r[m.TRAIN_ACCURACY]:.2f} % "
            f"| {100 * r[m.PUBLIC_ACCURACY]:.2f} % | {r[m.TRAIN_LOSS]:.4f} "
            f"| {r[m.PUBLIC_LOSS]:.4g} | {r[m.LEARNING_RATE]:.3g} |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for lr in sorted({r["lr"] for r in rows}, key=float, reverse=True):
        mine = [r for r in rows if r["lr"] == lr]
        epochs = [r["epoch"] for r in mine]
        label = f"lr {float(lr):g}"
        axes[0].plot(epochs, [100 * r[m.TRAIN_ACCURACY] for r in mine], "o-", label=label)
        axes[1].plot(epochs, [100 * r[m.PUBLIC_ACCURACY] for r in mine], "o-", label=label)
        axes[2].semilogy(epochs, [r[m.PUBLIC_LOSS] for r in mine], "o-", label=label)
    titles = ("Training accuracy (%)", "PublicTest accuracy (%)", "PublicTest loss (log)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("thesis-top3, all 28,709 training images: lr as printed (0.1) vs 1e-3")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="lr-check-thesis-top3")
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    rows = collect(MlflowClient(args.tracking_uri), args.experiment)
    if not rows:
        raise SystemExit(f"error: experiment {args.experiment!r} has no finished epochs")
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "thesis-top3-lr-check.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure(rows, args.out / "thesis-top3-lr-check.png")
    print(table(rows))


if __name__ == "__main__":
    main()
