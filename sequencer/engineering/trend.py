"""Trends: one QC figure from the history, against date or CCD temperature.

``megara-dark trend FIGURE --against date|temperature`` writes
``trend-<figure>-<against>.png``, ``.html`` (the same plot inline, the
points as a table) and ``.json`` (points and fit). Limits are those of the
instrument configuration in force, drawn as dashed lines.

Against temperature, a dark current is fitted as ``ln D = a + b T`` per
amplifier (positive values only): ``b`` is the logarithmic slope and
``ln 2 / b`` the temperature step over which the dark current doubles, the
figure engineers compare with the detector's law.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from drivers.errors import ConfigError
from sequencer.engineering import plots, report
from sequencer.engineering.history import History, Point
from sequencer.engineering.limits import FIGURES, Limit

AGAINST = ("date", "temperature")


@dataclass(frozen=True)
class Fit:
    """``ln(value) = intercept + slope * T`` for one series."""

    slope_per_k: float
    intercept: float
    doubling_k: float | None
    points: int

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "log_slope_per_k": self.slope_per_k,
            "intercept": self.intercept,
            "doubling_k": self.doubling_k,
            "points": self.points,
        }


def fit_log_linear(ts: list[float], values: list[float]) -> Fit | None:
    """Least-squares fit of ``ln(values)`` against ``ts`` (None: < 2 temperatures)."""
    pairs = [(t, v) for t, v in zip(ts, values, strict=True) if v > 0]
    if len({t for t, _ in pairs}) < 2:
        return None
    x = np.array([t for t, _ in pairs])
    y = np.log([v for _, v in pairs])
    slope, intercept = (float(c) for c in np.polyfit(x, y, 1))
    doubling = math.log(2.0) / slope if slope > 0 else None
    return Fit(slope, intercept, doubling, len(pairs))


def _series_name(p: Point) -> str:
    return "set" if p.amplifier is None else f"amp {p.amplifier}"


def _x(p: Point, against: str) -> Any:
    if against == "temperature":
        return p.temperature_k
    try:
        return datetime.fromisoformat(p.date_obs)
    except ValueError:
        return None


def trend(
    history: Path,
    figure: str,
    against: str,
    out: Path,
    limit: Limit,
    *,
    simulated: bool | None = None,
) -> dict[str, Any]:
    """Plot ``figure`` from ``history`` against date or temperature into ``out``.

    Returns
    -------
    dict
        The JSON description written beside the plot (paths, points, fits).

    Raises
    ------
    ConfigError
        Unknown figure or axis, missing database, or no values to plot.
    """
    if figure not in FIGURES:
        raise ConfigError(
            f"unknown figure {figure!r}; expected one of {', '.join(FIGURES)}"
        )
    if against not in AGAINST:
        raise ConfigError(f"--against {against!r}; expected date or temperature")
    if not history.is_file():
        raise ConfigError(
            f"{history}: no history database; run megara-dark verify (or a "
            "campaign) first, or give --history"
        )
    with History(history) as db:
        points = [p for p in db.series(figure, simulated) if _x(p, against) is not None]
    if not points:
        raise ConfigError(
            f"{history}: no {figure} values with a known {against}; "
            "verify some dark sets first"
        )
    spec = FIGURES[figure]
    groups: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        groups[_series_name(p)].append(p)
    fits: dict[str, Fit] = {}
    curve = None
    if against == "temperature":
        for name, pts in groups.items():
            pts.sort(key=lambda p: p.temperature_k or 0.0)
            fitted = fit_log_linear(
                [p.temperature_k or 0.0 for p in pts], [p.value for p in pts]
            )
            if fitted is not None:
                fits[name] = fitted
        if fits:
            first = next(iter(fits.values()))
            ts = np.linspace(
                min(p.temperature_k or 0.0 for p in points),
                max(p.temperature_k or 0.0 for p in points),
                50,
            )
            curve = (list(ts), list(np.exp(first.intercept + first.slope_per_k * ts)))
    # One x axis for all series: each series' points in its own order.
    png = _plot(groups, against, spec.unit, figure, limit, curve)
    stem = f"trend-{figure}-{against}"
    doc = {
        "figure": figure,
        "unit": spec.unit,
        "against": against,
        "history": str(history),
        "limits": {"min": limit.min, "max": limit.max},
        "points": [
            {
                "series": _series_name(p),
                "date_obs": p.date_obs,
                "temperature_k": p.temperature_k,
                "value": p.value,
                "block": p.block,
                "simulated": p.simulated,
            }
            for p in points
        ],
        "fits": {k: v.to_json_dict() for k, v in fits.items()},
        "png": str(out / f"{stem}.png"),
        "html": str(out / f"{stem}.html"),
    }
    report.write_bytes_atomic(out / f"{stem}.png", png)
    report.write_atomic(out / f"{stem}.html", _page(doc, png, fits))
    report.write_json(out / f"{stem}.json", doc)
    return doc


def _plot(
    groups: dict[str, list[Point]],
    against: str,
    unit: str,
    figure: str,
    limit: Limit,
    curve: tuple[list[float], list[float]] | None,
) -> bytes:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    for name, pts in sorted(groups.items()):
        xs = [_x(p, against) for p in pts]
        ax.plot(xs, [p.value for p in pts], "o-", ms=5, label=name)
    for bound, text in ((limit.min, "min"), (limit.max, "max")):
        if bound is not None:
            ax.axhline(bound, color="#c62828", ls="--", lw=1.2, label=f"limit ({text})")
    if curve is not None:
        ax.plot(*curve, color="0.4", lw=1, ls=":", label="fit ln D = a + b T")
        ax.set_yscale("log")
    ax.set_xlabel("CCD temperature, K" if against == "temperature" else "date (UTC)")
    ax.set_ylabel(f"{figure}, {unit}")
    ax.set_title(f"{figure} against {against}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if against == "date":
        fig.autofmt_xdate()
    return plots.save_png(fig)


def _page(doc: dict[str, Any], png: bytes, fits: dict[str, Fit]) -> str:
    rows = [
        [p["series"], p["date_obs"], report.fmt(p["temperature_k"], 6),
         report.fmt(p["value"]), p["block"], p["simulated"]]
        for p in doc["points"]
    ]  # fmt: skip
    fit_rows = [
        [name, f"{f.slope_per_k:.4g}", report.fmt(f.doubling_k), f.points]
        for name, f in fits.items()
    ]
    limits = Limit(doc["limits"]["min"], doc["limits"]["max"]).describe()
    parts = [
        report.image(png, "trend", f"{doc['figure']} against {doc['against']}"),
        f"<p>Limits: {report.esc(limits)} {report.esc(doc['unit'])}; "
        f"history {report.esc(doc['history'])}.</p>",
    ]
    if fit_rows:
        parts += [
            "<h2>Fit ln D = a + b T</h2>",
            report.table(
                ["series", "b (1/K)", "doubling every (K)", "points"],
                fit_rows,
                [{"data-fit": name} for name in fits],
            ),
        ]
    parts += [
        "<h2>Points</h2>",
        report.table(
            ["series", "DATE-OBS", "CCD K", "value", "block", "simulated"], rows
        ),
    ]
    return report.page(f"Trend: {doc['figure']} against {doc['against']}", parts)
