"""Figures for the engineering reports, drawn with matplotlib (Agg) to PNG bytes.

matplotlib is an optional dependency (the ``report`` extra): :func:`pyplot`
imports it on demand and turns its absence into one line saying how to
install it. Images are binned for display (a 4112 x 4096 master would make a
64 MB PNG); the statistics themselves come from the full-resolution products.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.errors import ConfigError
from sequencer.engineering.figures import Figure
from sequencer.engineering.limits import FIGURES, Limit

INSTALL_HINT = (
    "matplotlib is needed to draw the report; install it with "
    "pip install 'megara-dark[report]'"
)
_BIN = 8  # display binning of the master dark, pixels
_OK, _BAD, _LIMIT = "#2e7d32", "#c62828", "#c62828"


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or a ConfigError naming the extra."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as err:
        raise ConfigError(INSTALL_HINT) from err
    return plt


def save_png(fig: Any) -> bytes:
    """The figure as PNG bytes (and closed)."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def bin_image(
    image: npt.NDArray[Any], factor: int, how: str = "mean"
) -> npt.NDArray[np.float64]:
    """Bin ``image`` by ``factor`` in both axes (partial edge bins dropped)."""
    rows, cols = (s // factor * factor for s in image.shape)
    view = np.asarray(image[:rows, :cols], dtype=np.float64).reshape(
        rows // factor, factor, cols // factor, factor
    )
    result = view.max(axis=(1, 3)) if how == "max" else view.mean(axis=(1, 3))
    return np.asarray(result, dtype=np.float64)


def stretch(image: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Display range: the 1st to 99.5th percentile of the finite pixels."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1.0, 99.5]))
    return (low, high) if high > low else (low, low + 1.0)


def master_image(rate_e_h: npt.NDArray[Any]) -> bytes:
    """The dark-current image (e-/pix/h), binned, percentile stretch."""
    plt = pyplot()
    binned = bin_image(rate_e_h, _BIN)
    low, high = stretch(binned)
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    shown = ax.imshow(binned, origin="lower", cmap="magma", vmin=low, vmax=high)
    ax.set_title(f"master dark, {_BIN}x{_BIN} binned (1-99.5 % stretch)")
    ax.set_xlabel(f"column / {_BIN}")
    ax.set_ylabel(f"row / {_BIN} (amplifier 1 below, 2 above)")
    fig.colorbar(shown, ax=ax, label="dark current, e-/pix/h")
    return save_png(fig)


def histogram(
    rate_e_h: npt.NDArray[Any],
    split_row: int,
    quanta: Sequence[float],
    figures: Sequence[Figure],
    limit: Limit,
) -> bytes:
    """Per-amplifier histograms of the dark current, with the measured means.

    ``quanta`` is one ADU in e-/pix/h per amplifier (gain x 3600 / DARKTIME):
    the master's values are close to whole ADU, so bins of that width keep
    the histogram free of aliasing.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True)
    halves = (rate_e_h[:split_row], rate_e_h[split_row:])
    for number, (ax, half, q) in enumerate(
        zip(axes, halves, quanta, strict=True), start=1
    ):
        values = np.asarray(half[::2, ::2], dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [0.05, 99.95])
        first, last = math.floor(low / q - 0.5), math.ceil(high / q + 0.5)
        bins = (np.arange(first, last + 1) + 0.5) * q
        ax.hist(values, bins=bins, histtype="stepfilled", log=True, alpha=0.7)
        for f in figures:
            if f.name == "dark_current" and f.amplifier == number and f.value:
                ax.axvline(f.value, color="k", lw=1, ls=":", label="mean")
        if limit.max is not None and limit.max <= bins[-1] * 1.5:
            ax.axvline(limit.max, color=_LIMIT, ls="--", label="limit")
        ax.set_title(f"amplifier {number} (bins of 1 ADU)", fontsize=9)
        ax.set_xlabel("dark current per pixel, e-/pix/h (1 in 4 pixels)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("pixels")
    fig.tight_layout()
    return save_png(fig)


def hot_pixel_map(dq: npt.NDArray[Any]) -> bytes:
    """Where the DQ mask flags pixels (hot pixel: orange, hot column: blue)."""
    plt = pyplot()
    hot = bin_image(dq & 1, _BIN, "max")
    cols = bin_image((dq & 2) >> 1, _BIN, "max")
    rgb = np.ones((*hot.shape, 3))
    rgb[cols > 0] = (0.2, 0.4, 0.85)
    rgb[hot > 0] = (0.95, 0.45, 0.0)
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    ax.imshow(rgb, origin="lower", interpolation="nearest")
    ax.set_title(
        f"hot pixels (orange, {int(np.count_nonzero(dq & 1))}) and hot columns "
        f"(blue), {_BIN}x{_BIN} bins"
    )
    ax.set_xlabel(f"column / {_BIN}")
    ax.set_ylabel(f"row / {_BIN}")
    return save_png(fig)


def amplifier_panels(figures: Sequence[Figure], limits: dict[str, Limit]) -> bytes:
    """One panel per per-amplifier figure: a bar per amplifier, limits dashed."""
    plt = pyplot()
    names = [n for n, s in FIGURES.items() if s.per_amplifier]
    fig, axes = plt.subplots(2, math.ceil(len(names) / 2), figsize=(10.0, 5.6))
    for ax, name in zip(np.ravel(axes), names, strict=False):
        own = [f for f in figures if f.name == name and f.value is not None]
        limit = limits[name]
        values = [float(f.value or 0.0) for f in own]
        colours = [_OK if limit.allows(v) else _BAD for v in values]
        ax.bar([f"amp {f.amplifier}" for f in own], values, color=colours)
        for bound in (limit.min, limit.max):
            if bound is not None:
                ax.axhline(bound, color=_LIMIT, ls="--", lw=1.2)
        top = max([*values, *(b for b in (limit.min, limit.max) if b is not None)])
        ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)
        ax.set_title(f"{name} ({FIGURES[name].unit})", fontsize=9)
    fig.suptitle("per-amplifier figures (red dashed: limits; red bar: out of limits)")
    fig.tight_layout()
    return save_png(fig)
