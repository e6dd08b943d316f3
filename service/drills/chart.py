"""The drill's timeline chart: requests and failures per second, delivery-lag p99, and
the fault window shaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIN_FAULT_BAND_S = 0.4


def draw(series: dict[str, list[Any]], fault_s: tuple[float, float], title: str,
         path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    figure, (load_axes, lag_axes) = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    seconds = series["t_s"]
    load_axes.plot(seconds, series["requests"], color="tab:blue", label="requests/s")
    load_axes.bar(seconds, series["failures"], width=0.9, color="tab:red", label="failures/s")
    load_axes.set_ylabel("per second")
    load_axes.legend(loc="upper left")
    lags = [(t, lag) for t, lag in zip(seconds, series["lag_p99_ms"]) if lag is not None]
    lag_axes.plot([t for t, _ in lags], [lag for _, lag in lags], color="tab:purple",
                  marker=".", label="delivery lag p99")
    lag_axes.set_ylabel("ms")
    lag_axes.set_ylim(bottom=0)
    lag_axes.set_xlabel("seconds since the load started")
    lag_axes.legend(loc="upper left")
    start, end = fault_s
    for axes in (load_axes, lag_axes):
        # an instant fault (kill -9) still shows, as a band of at least a few tenths
        axes.axvspan(start, max(end, start + MIN_FAULT_BAND_S), color="tab:orange",
                     alpha=0.3, label="fault")
        axes.grid(alpha=0.3)
    load_axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
