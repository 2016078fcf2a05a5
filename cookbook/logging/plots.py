"""Loss curve of a run as a PNG, drawn from metrics.jsonl so it can be redrawn after the fact."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_loss_curve(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Write ``out`` (train NLL per step, test NLL where evaluated); None if nothing to draw."""
    train = [(r["step"], r["train_mean_nll"]) for r in rows if r.get("train_mean_nll") is not None]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(*zip(*train, strict=True), marker=".", label="train_mean_nll")
    test = [(r["step"], r["test/nll"]) for r in rows if r.get("test/nll") is not None]
    if test:
        ax.plot(*zip(*test, strict=True), marker="o", linestyle="--", label="test/nll")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out
