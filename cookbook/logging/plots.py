"""Curves of a run as PNGs, drawn from metrics.jsonl so they can be redrawn after the fact."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_curves(
    rows: list[dict[str, Any]], out: Path, main: str, evaluation: str, ylabel: str
) -> Path | None:
    """Write ``out``: ``main`` per step, ``evaluation`` where evaluated; None if nothing to draw."""
    train = [(r["step"], r[main]) for r in rows if r.get(main) is not None]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(*zip(*train, strict=True), marker=".", label=main)
    test = [(r["step"], r[evaluation]) for r in rows if r.get(evaluation) is not None]
    if test:
        ax.plot(*zip(*test, strict=True), marker="o", linestyle="--", label=evaluation)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_loss_curve(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Supervised: train NLL per step, test NLL where evaluated."""
    return plot_curves(rows, out, "train_mean_nll", "test/nll", "NLL (nats/token)")


def plot_reward_curve(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """RL: mean total reward per step (``env/all/reward/total``, or rl_loop's
    ``reward/total``), test-set reward where evaluated."""
    main = "reward/total" if any("reward/total" in r for r in rows) else "env/all/reward/total"
    return plot_curves(rows, out, main, "test/env/all/reward/total", "mean total reward")
