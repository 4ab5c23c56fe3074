"""How to reduce: :class:`Options`, whose QC thresholds and frame-check
settings come from a TOML file (``--qc-config``, :func:`load_qc_config`).

::

    [qc]
    expected_dark_current = 5.0                 # e-/pix/h, this detector's
    expected_read_noise = 3.5                   # e-, this detector's
    dark_current = { warn = 3.0, bad = 6.0 }    # x expected_dark_current
    read_noise = { warn = 1.3, bad = 2.0 }      # x expected_read_noise
    overscan_drift = { warn = 5.0, bad = 20.0 } # x expected read noise in ADU
    hot_fraction = { warn = 0.001, bad = 0.01 }
    cosmic_residual_fraction = { warn = 2e-4 }
    temperature_spread = { warn = 2.0 }         # K, across a dark block
    hot_rate_e_s = 0.02                         # e-/s over the background
    hot_column_rate_e_s = 0.002                 # e-/s
    hot_nsigma = 5.0                            # noise sigmas, at least

    [checks]
    exptime_rtol = 1e-3
    leak_nsigma = 5.0           # errors of a frame's mean excess (uniform leak)
    leak_tile_nsigma = 5.5      # errors of one tile's excess (structured leak)
    leak_floor = 0.01           # fraction of the dark signal honest frames vary
    reference_k = 163.0
    doubling_k = 2.7

Every key is optional; an unknown key or a wrong type is an error that names
the file and the key. Every number is bounded where it is read
(:data:`RANGES`): a NaN threshold would pass every pixel and every figure
(a master that looks GOOD and is not), an integer of 400 digits would
overflow a float later. The file is read by :func:`reduce.files.read_text`
(a regular file of bounded size: a FIFO or a device is refused unopened).
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reduce.blocks import shown
from reduce.checks import FrameCheckConfig
from reduce.combine import band_rows_for
from reduce.engine import default_threads
from reduce.errors import InputError, SettingsError
from reduce.files import read_text
from reduce.overscan import SplineBackend
from reduce.qalimits import QALimit, QCThresholds

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to reduce.

    Attributes
    ----------
    method
        ``median`` (megaradrp's) or ``noise_clip``.
    min_frames
        Fewer usable frames than this is an error.
    exact
        FITPACK overscan spline (scipy's, as megaradrp): bit-identical to
        megaradrp; needs scipy, whose import costs a few tenths of a second.
    thresholds
        QC detection settings and QA limits.
    checks
        Exposure-time and light-leak check settings.
    threads
        Worker threads (None: one per CPU, at most 8).
    band_rows
        Rows combined at a time (None: :func:`rows_per_band` chooses).
    """

    method: Literal["median", "noise_clip"] = "median"
    min_frames: int = 3
    exact: bool = False
    thresholds: QCThresholds = field(default_factory=QCThresholds)
    checks: FrameCheckConfig = field(default_factory=FrameCheckConfig)
    threads: int | None = None
    band_rows: int | None = None

    def __post_init__(self) -> None:
        if self.min_frames < 1:
            raise SettingsError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.threads is not None and self.threads < 1:
            raise SettingsError(f"threads must be >= 1, got {self.threads}")
        if self.band_rows is not None and self.band_rows < 1:
            raise SettingsError(f"band_rows must be >= 1, got {self.band_rows}")

    def rows_per_band(self, n: int) -> int:
        """Rows combined at a time for ``n`` frames: ``band_rows``, else the
        combination's own choice (:func:`reduce.combine.band_rows_for`)."""
        if self.band_rows is not None:
            return self.band_rows
        return band_rows_for(self.method, n)

    @classmethod
    def from_qc_file(cls, qc_config: str | Path | None, **fields: Any) -> Options:
        """Options with the QC settings of ``qc_config`` (None: the defaults).

        ``fields``: any other attribute (``min_frames``, ``method`` ...).

        Raises
        ------
        SettingsError
            The QC file cannot be read, a key in it is unknown or invalid, or
            a field is out of range.
        """
        if qc_config is None:
            return cls(**fields)
        thresholds, checks = load_qc_config(qc_config)
        return cls(thresholds=thresholds, checks=checks, **fields)

    @property
    def worker_threads(self) -> int:
        """``threads``, or one per CPU (at most 8) when None."""
        return self.threads or default_threads()

    @property
    def backend(self) -> SplineBackend:
        """The overscan spline fitter: FITPACK when ``exact``."""
        return "fitpack" if self.exact else "numpy"


MAX_QC_BYTES = 1 << 20
"""Largest QC settings file read (bytes): it is a dozen lines."""

RANGES: dict[str, tuple[float, float, bool, str]] = {
    "hot_nsigma": (0.0, 1000.0, True, "robust sigmas"),
    "hot_rate_e_s": (0.0, 1e4, True, "e-/s"),
    "hot_column_rate_e_s": (0.0, 1e4, True, "e-/s"),
    "expected_dark_current": (0.0, 1e6, True, "e-/pix/h"),
    "expected_read_noise": (0.0, 1e4, True, "e-"),
    "dark_current": (0.0, 1e6, False, "times expected_dark_current"),
    "read_noise": (0.0, 1e4, False, "times expected_read_noise"),
    "hot_fraction": (0.0, 1.0, False, "a fraction of the pixels"),
    "cosmic_residual_fraction": (0.0, 1.0, False, "a fraction of the pixels"),
    "temperature_spread": (0.0, 1000.0, False, "kelvin"),
    "overscan_drift": (0.0, 1e4, False, "times the expected read noise in ADU"),
    "exptime_rtol": (0.0, 1.0, True, "a relative difference"),
    "leak_nsigma": (0.0, 1000.0, True, "errors of the mean excess"),
    "leak_tile_nsigma": (0.0, 1000.0, True, "errors of a tile's excess"),
    "leak_floor": (0.0, 1.0, True, "a fraction of the dark signal"),
    "reference_k": (0.0, 400.0, True, "kelvin"),
    "doubling_k": (0.0, 1000.0, True, "kelvin"),
}
"""Per setting: lowest, highest, whether the lowest is excluded, the unit."""

KEYWORD_LISTS = frozenset({"temperature_keys"})
"""Settings that are lists of header keywords, not numbers."""

_FIELDS = {
    f.name for cls in (QCThresholds, FrameCheckConfig) for f in dataclasses.fields(cls)
} - KEYWORD_LISTS
if set(RANGES) != _FIELDS:  # a programming error, found by any import
    raise TypeError(f"reduce.settings.RANGES must cover exactly {sorted(_FIELDS)}")


def _number(value: Any, where: str, key: str) -> float:
    """``value`` as a float within the range of setting ``key``."""
    low, high, above, unit = RANGES[key]
    expected = f"{'>' if above else '>='} {low:g} and <= {high:g} ({unit})"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingsError(f"{where}: {shown(value)} is not a number ({expected})")
    # An int is compared as an int: float(10**400) would overflow.
    inside = (low < value if above else low <= value) and value <= high
    if not inside:  # NaN compares False: refused here too
        raise SettingsError(
            f"{where}: got {shown(value)}; expected a number {expected}"
        )
    return float(value)


def _limit(value: Any, default: QALimit, here: str, key: str) -> QALimit:
    if not isinstance(value, Mapping) or set(value) - {"warn", "bad"}:
        raise SettingsError(f"{here}: expected a table {{ warn = x, bad = y }}")
    warn = _number(value["warn"], f"{here}.warn", key) if "warn" in value else None
    bad = _number(value["bad"], f"{here}.bad", key) if "bad" in value else None
    try:
        return QALimit(
            warn=default.warn if warn is None else warn,
            bad=default.bad if bad is None else bad,
        )
    except SettingsError as err:
        raise SettingsError(f"{here}: {err}") from None


def _keywords(value: Any, here: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SettingsError(
            f"{here}: {shown(value)}; expected a list of header keywords, "
            'e.g. ["CCDTEMP0", "CCDTEMP1"]'
        )
    return tuple(v.upper() for v in value)


def _section(table: Mapping[str, Any], cls: type[Any], where: str) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        here = f"{where}.{repr(key)[1:-1]}"  # one line, whatever the key holds
        if key == "min_frames" and where.endswith("qc"):
            raise SettingsError(
                f"{here}: not a QC setting: the minimum number of usable frames "
                "is --min-frames of megara-dark reduce (or [reduce] min_frames "
                "of the instrument configuration); fewer is an error, not a QA flag"
            )
        if key not in fields:
            raise SettingsError(
                f"{here}: unknown key; expected one of {sorted(fields)}"
            )
        default = getattr(cls(), key)
        if isinstance(default, QALimit):
            values[key] = _limit(value, default, here, key)
        elif isinstance(default, tuple):
            values[key] = _keywords(value, here)
        else:
            values[key] = _number(value, here, key)
    return values


def _parse(path: str | Path) -> dict[str, Any]:
    """The TOML document of the file; every failure one SettingsError line."""
    source = str(path)
    try:
        text = read_text(path, "QC settings file", MAX_QC_BYTES)
    except InputError as err:
        raise SettingsError(str(err)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{source}: not valid TOML: {err}") from None
    except RecursionError:
        raise SettingsError(
            f"{source}: not valid TOML: nested too deeply to read; the QC settings "
            "are two flat tables, [qc] and [checks]"
        ) from None
    except ValueError:  # an integer of more than 4300 digits
        raise SettingsError(
            f"{source}: not valid TOML: an integer of more than 4300 digits"
        ) from None


def load_qc_config(path: str | Path) -> tuple[QCThresholds, FrameCheckConfig]:
    """Read QC thresholds and frame-check settings from a TOML file.

    Raises
    ------
    SettingsError
        If the file cannot be read or parsed, or a key is unknown or wrong.
    """
    source = str(path)
    data = _parse(path)
    unknown = set(data) - {"qc", "checks"}
    if unknown:
        names = sorted(repr(k)[1:-1][:60] for k in unknown)
        raise SettingsError(
            f"{source}: unknown section(s) {names}; expected [qc], [checks]"
        )
    for name in ("qc", "checks"):
        if not isinstance(data.get(name, {}), Mapping):
            raise SettingsError(
                f"{source}: {name} is {shown(data[name])}; expected a table [{name}]"
            )
    try:
        qc = QCThresholds(**_section(data.get("qc", {}), QCThresholds, f"{source}: qc"))
        checks = FrameCheckConfig(
            **_section(data.get("checks", {}), FrameCheckConfig, f"{source}: checks")
        )
    except SettingsError as err:
        message = str(err)
        raise SettingsError(
            message if message.startswith(source) else f"{source}: {message}"
        ) from err
    return qc, checks
