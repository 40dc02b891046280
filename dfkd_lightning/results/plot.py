"""``dfkd results --plot``: validation accuracy against wall-clock time, one line per run."""

from __future__ import annotations

from pathlib import Path

from dfkd_lightning.errors import UserError
from dfkd_lightning.results.runs import Run

__all__ = ["plot_accuracy_over_time"]


def plot_accuracy_over_time(runs: list[Run], path: str | Path, root: Path | None = None) -> int:
    """Draw ``val/acc`` against ``time/elapsed_s`` of every run that logged both to ``path``
    (PNG); returns how many runs were drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(
            "--plot needs matplotlib: pip install 'dfkd-lightning[plot]' (or matplotlib)"
        ) from None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for run in runs:
        if not run.curve:
            continue
        seconds, accuracy = zip(*run.curve, strict=True)
        label = " ".join(str(run.keys[k]) for k in ("method", "seed") if k in run.keys)
        axes.plot(seconds, accuracy, marker=".", label=label or str(run.path))
        drawn += 1
    axes.set_xlabel("wall-clock seconds of fit")
    axes.set_ylabel("val/acc")
    axes.grid(alpha=0.3)
    if drawn:
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return drawn
