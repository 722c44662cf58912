"""Learning-curve and confusion-matrix figures, written as PNG files for MLflow."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a training machine
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fer_sweep.fer2013 import EMOTIONS  # noqa: E402


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key, title in zip(axes, ("loss", "accuracy"), ("loss", "accuracy"), strict=False):
        if key in history:
            ax.plot(epochs, history[key], label="Training")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="PublicTest")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if ax.lines:  # a history without this metric (a fake trainer's) draws an empty panel
            ax.legend()
    if "lr" in history:
        axes[2].semilogy(epochs, history["lr"])
        axes[2].set_title("learning rate")
        axes[2].set_xlabel("epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(report, path: Path, *, title: str) -> None:
    matrix = np.asarray(report.confusion, dtype=float)
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(7), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(7), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(7):
        for j in range(7):
            ax.text(
                j,
                i,
                f"{int(matrix[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_title(f"{title}: {report.accuracy:.2%}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
