"""QC thresholds and frame-check settings from a TOML file (``--qc-config``).

::

    [qc]
    hot_nsigma = 5.0
    dark_current = { warn = 5.0, bad = 20.0 }   # e-/pix/h
    read_noise = { warn = 4.5, bad = 8.0 }      # e-
    hot_fraction = { warn = 0.001, bad = 0.01 }
    overscan_drift = { warn = 5.0, bad = 20.0 } # ADU

    [checks]
    exptime_rtol = 1e-3
    leak_rate_e_s = 0.01        # e-/pix/s at reference_k
    leak_excess_e_s = 0.002     # e-/pix/s above the block's median
    reference_k = 163.0
    doubling_k = 2.7

Every key is optional; an unknown key or a wrong type is an error that names
the file and the key.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reduce.checks import FrameCheckConfig
from reduce.errors import ConfigError
from reduce.qc import Limit, QCThresholds

log = logging.getLogger(__name__)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {value!r} is not a number")
    return float(value)


def _section(table: Mapping[str, Any], cls: type[Any], where: str) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        here = f"{where}.{repr(key)[1:-1]}"  # one line, whatever the key holds
        if key == "min_frames" and where.endswith("qc"):
            raise ConfigError(
                f"{here}: not a QC setting: the minimum number of usable frames "
                "is --min-frames of megara-dark reduce (or [reduce] min_frames "
                "of the instrument configuration); fewer is an error, not a QA flag"
            )
        if key not in fields:
            raise ConfigError(f"{here}: unknown key; expected one of {sorted(fields)}")
        default = getattr(cls(), key)
        if isinstance(default, Limit):
            if not isinstance(value, Mapping) or set(value) - {"warn", "bad"}:
                raise ConfigError(f"{here}: expected a table {{ warn = x, bad = y }}")
            values[key] = Limit(
                warn=_number(value["warn"], here) if "warn" in value else default.warn,
                bad=_number(value["bad"], here) if "bad" in value else default.bad,
            )
        elif isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{here}: {value!r} is not an integer")
            values[key] = value
        else:
            values[key] = _number(value, here)
    return values


def load_qc_config(path: str | Path) -> tuple[QCThresholds, FrameCheckConfig]:
    """Read QC thresholds and frame-check settings from a TOML file.

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or a key is unknown or wrong.
    """
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not a UTF-8 text file ({err.reason})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}") from err
    unknown = set(data) - {"qc", "checks"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown section(s) {sorted(unknown)}; expected [qc], [checks]"
        )
    for name in ("qc", "checks"):
        if not isinstance(data.get(name, {}), Mapping):
            raise ConfigError(
                f"{source}: {name} is {data[name]!r}; expected a table [{name}]"
            )
    try:
        qc = QCThresholds(**_section(data.get("qc", {}), QCThresholds, f"{source}: qc"))
        checks = FrameCheckConfig(
            **_section(data.get("checks", {}), FrameCheckConfig, f"{source}: checks")
        )
    except ConfigError as err:
        message = str(err)
        raise ConfigError(
            message if message.startswith(source) else f"{source}: {message}"
        ) from err
    return qc, checks
