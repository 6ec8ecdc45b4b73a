"""PNG plots for reports (matplotlib, headless). Each function writes one file atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Render in memory, then write atomically with the permissions of any other output file."""
    import io

    import matplotlib.pyplot as plt

    from recplat.storage import write_bytes_atomic

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


def curves(series: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str,
           xlabel: str = "step", ylabel: str = "", logx: bool = False,
           references: Mapping[str, float] | None = None) -> Path:  # fmt: skip
    """`curves_figure` written to `path` as a PNG."""
    return _save(curves_figure(series, title, xlabel, ylabel, logx, references), path)


def curves_figure(series: Mapping[str, Sequence[tuple[float, float]]], title: str, xlabel: str = "step",
                  ylabel: str = "", logx: bool = False, references: Mapping[str, float] | None = None):  # fmt: skip
    """One line per named series of (x, y) points, e.g. training loss per step for each model.

    `references` are horizontal dashed lines a reader measures the curves against (a random
    ranking, a popularity baseline, the chance-level loss), each labelled with its value. The y
    axis starts at 0 so that distances between lines read as proportions.
    """
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, points in series.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 20 else None, markersize=3, label=name)
    drawn = [(name, value) for name, value in (references or {}).items() if value is not None]
    for i, (name, value) in enumerate(drawn):
        ax.axhline(value, color="0.35", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=f"{name} ({value:.3g})")
    if logx:
        ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if any(series.values()) or drawn:
        ax.legend(fontsize=8)
    if not any(series.values()):  # e.g. a run stopped before its first logged step: say so
        ax.text(0.5, 0.5, "no points recorded", ha="center", va="center", transform=ax.transAxes)
    return fig


def grouped_bars(values: Mapping[str, Mapping[str, float]], path: str | Path, title: str, ylabel: str = "",
                 percent: bool = True) -> Path:  # fmt: skip
    """Bars grouped by metric (x axis), one colour per model/run: values[run][metric]."""
    import numpy as np

    plt = _figure()
    runs = list(values)
    metrics = list(dict.fromkeys(m for run in runs for m in values[run]))
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(metrics) * max(len(runs), 1) / 2), 3.8))
    x = np.arange(len(metrics))
    for i, run in enumerate(runs):
        heights = [values[run].get(m, np.nan) * (100 if percent else 1) for m in metrics]
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, heights, width, label=run)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, metrics)
    ax.set_title(title)
    ax.set_ylabel(ylabel or ("%" if percent else ""))
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def scatter(series: Mapping[str, Sequence[tuple]], path: str | Path, title: str, xlabel: str = "",
            ylabel: str = "", logx: bool = False) -> Path:  # fmt: skip
    """Unconnected points, one colour per named group, e.g. a sweep's objective against one
    parameter. Non-numeric x values (variant names) are placed on a categorical axis."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    xs_all = [x for points in series.values() for x, _ in points]
    categories = None
    if any(not isinstance(x, (int, float)) or isinstance(x, bool) for x in xs_all):
        categories = list(dict.fromkeys(str(x) for x in xs_all))
    for name, points in series.items():
        if points:
            xs = [categories.index(str(x)) if categories else x for x, _ in points]
            ax.scatter(xs, [y for _, y in points], s=24, label=name)
    if categories:
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right")
    elif logx:
        ax.set_xscale("log")
    else:  # learning rates: 1e-4 .. 3e-4 in scientific notation, not ten overlapping decimals
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if xs_all:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no points recorded", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)
