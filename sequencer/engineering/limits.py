"""The QC figures that engineering verification checks, and their limits.

The ``[verify]`` table of the instrument configuration (TOML) sets the limits
and the history database::

    [verify]
    history = "megara-dark-runs/history.sqlite"   # relative to the TOML file

    [verify.limits]                  # any figure of FIGURES; min and/or max
    dark_current = {max = 5.0}       # e-/pix/h, each amplifier
    read_noise = {min = 2.0, max = 4.5}

A figure within ``[min, max]`` (both inclusive) passes; a bound left out is
not checked. Limits not given keep the defaults of :data:`FIGURES`. This
module is standard library only: the configuration loader imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError

#: History database used when the configuration names none (beside the runs).
DEFAULT_HISTORY = Path("megara-dark-runs") / "history.sqlite"


@dataclass(frozen=True)
class Limit:
    """Inclusive bounds on one figure (None: that side is not checked)."""

    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"min {self.min:g} exceeds max {self.max:g}")

    def allows(self, value: float) -> bool:
        """Whether ``value`` is within the bounds."""
        if not math.isfinite(value):
            return False
        if self.min is not None and value < self.min:
            return False
        return self.max is None or value <= self.max

    @property
    def checked(self) -> bool:
        return self.min is not None or self.max is not None

    def describe(self) -> str:
        """``[2, 4.5]``, ``<= 5`` or ``>= 2`` (``not checked`` if neither)."""
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        if self.max is not None:
            return f"<= {self.max:g}"
        if self.min is not None:
            return f">= {self.min:g}"
        return "not checked"


@dataclass(frozen=True)
class FigureSpec:
    """What one QC figure is.

    Attributes
    ----------
    name
        Key in the configuration, the history and the JSON verdict.
    unit
        Unit of its values.
    per_amplifier
        One value per amplifier (else one per dark set).
    default
        Limits used when the configuration gives none.
    title
        A short human description, for reports.
    """

    name: str
    unit: str
    per_amplifier: bool
    default: Limit
    title: str


FIGURES: dict[str, FigureSpec] = {
    spec.name: spec
    for spec in (
        FigureSpec("dark_current", "e-/pix/h", True, Limit(max=5.0), "dark current"),
        FigureSpec("read_noise", "e-", True, Limit(2.0, 4.5), "read noise"),
        FigureSpec("hot_pixels", "pixels", True, Limit(max=10000), "hot pixels"),
        FigureSpec("hot_columns", "columns", True, Limit(max=10), "hot columns"),
        FigureSpec(
            "glow_peak",
            "e-/pix/h",
            True,
            Limit(),
            "amplifier glow, peak above the bulk dark current",
        ),
        FigureSpec(
            "overscan_level", "ADU", True, Limit(500.0, 5000.0), "overscan level"
        ),
        FigureSpec(
            "overscan_drift",
            "ADU",
            True,
            Limit(max=5.0),
            "overscan drift between frames",
        ),
        FigureSpec(
            "light_leak_frames",
            "frames",
            False,
            Limit(max=0),
            "frames excluded by the light-leak test",
        ),
        FigureSpec(
            "light_leak_excess",
            "e-/pix/s",
            False,
            Limit(max=0.002),
            "largest frame dark rate above the set's median",
        ),
        FigureSpec(
            "cover_close_time",
            "s",
            False,
            Limit(max=30.0),
            "cover close time, at least (device seconds)",
        ),
        FigureSpec(
            "shutter_open_frames",
            "frames",
            False,
            Limit(max=0),
            "frames with a shutter reading other than CLOSED",
        ),
        FigureSpec(
            "cover_open_frames",
            "frames",
            False,
            Limit(max=0),
            "frames with a cover reading other than both halves CLOSED",
        ),
        FigureSpec(
            "ccd_temperature", "K", False, Limit(), "mean CCD temperature of frames"
        ),
    )
}


@dataclass(frozen=True, kw_only=True)
class VerifySettings:
    """The ``[verify]`` table: limits per figure and the history database."""

    limits: Mapping[str, Limit] = field(
        default_factory=lambda: {n: s.default for n, s in FIGURES.items()}
    )
    history: Path = DEFAULT_HISTORY

    def limit(self, name: str) -> Limit:
        """The limits of figure ``name``."""
        return self.limits.get(name, FIGURES[name].default)


def _bound(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: got {value!r}; expected a number")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: got {value!r}; expected a finite number")
    return float(value)


def parse_limit(name: str, raw: object) -> Limit:
    """One ``[verify.limits]`` entry, e.g. ``{min = 2.0, max = 4.5}``."""
    where = f"[verify.limits] {name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: got {raw!r}; expected a table such as {{max = 5}}")
    unknown = sorted(set(raw) - {"min", "max"})
    if unknown or not raw:
        raise ConfigError(
            f"{where}: keys {', '.join(map(str, unknown)) or '(none)'}; "
            "expected min and/or max"
        )
    try:
        return Limit(
            _bound(raw.get("min"), f"{where}.min"),
            _bound(raw.get("max"), f"{where}.max"),
        )
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def parse_verify(table: Mapping[str, Any], base: Path) -> VerifySettings:
    """Validate the ``[verify]`` table; ``base`` is the configuration's folder."""
    unknown = sorted(set(table) - {"limits", "history"})
    if unknown:
        raise ConfigError(
            f"[verify]: unknown key(s) {', '.join(unknown)}; allowed: history, limits"
        )
    history = DEFAULT_HISTORY
    if "history" in table:
        raw = table["history"]
        if not isinstance(raw, str) or not raw:
            raise ConfigError(
                f"[verify] history: got {raw!r}; expected a file path (string)"
            )
        history = base / raw
    given = table.get("limits", {})
    if not isinstance(given, Mapping):
        raise ConfigError("[verify] limits: expected a table of figure = {min, max}")
    bad = sorted(set(given) - set(FIGURES))
    if bad:
        raise ConfigError(
            f"[verify.limits]: unknown figure(s) {', '.join(bad)}; "
            f"allowed: {', '.join(FIGURES)}"
        )
    limits = {n: s.default for n, s in FIGURES.items()}
    limits.update({n: parse_limit(n, raw) for n, raw in given.items()})
    return VerifySettings(limits=limits, history=history)
