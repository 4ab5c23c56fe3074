"""The instrument configuration: where the devices are and how the run behaves.

A TOML file, loaded once by the CLI. With no file, or with a ``[simulator]``
table, the built-in simulators are started as a subprocess and their URLs
used; with ``[devices]`` the run talks to real ports::

    [devices]
    ccd = "socket://megara-archon:4242"   # the STA Archon, on the network
    cover_left = "/dev/ttyUSB1"
    cover_right = "/dev/ttyUSB2"

    [ccd]                 # drivers.config.CcdConfig fields
    reply_timeout_s = 2.0
    retries = 3

    [cover]               # drivers.config.CoverConfig fields, both halves
    motion_timeout_s = 30.0

    [run]
    retake_limit = 2      # invalid frames retaken per block, at most
    poll_s = 1.0          # status poll interval while exposing (device seconds)

    [verify.limits]       # engineering verification (sequencer.engineering.limits)
    dark_current = {max = 5.0}

See ``examples/instrument-*.toml``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.config import CCD_SCHEMA, COVER_SCHEMA, CcdConfig, CoverConfig
from drivers.errors import ConfigError, shown, shown_path
from drivers.files import check_user_file, read_user_text, resolved
from drivers.schema import MAX_SEED, Choice, FilePath, Number, Schema, seconds
from sequencer.engineering.limits import VerifySettings, parse_verify

DEVICE_KEYS = ("ccd", "cover_left", "cover_right")


@dataclass(frozen=True, kw_only=True)
class SimulatorOptions:
    """Options passed to ``megara-dark simulate`` when the run starts it."""

    time_scale: float = 1000.0
    seed: int = 1
    ccd_temperature_k: float = 163.15
    readout_s: float = 40.0
    cover_motion_s: float = 6.0
    cover_initial: str = "open"
    transport: str = "pty"
    scenario: Path | None = None
    #: The simulated CCD's noise key; None: each run its own (from its run
    #: id), so that no run repeats another's noise. Pinned, two runs of the
    #: same blocks give the same pixels (reference runs in tests, campaigns).
    run_key: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            raise ConfigError(
                "simulator.time_scale must be a finite number > 0, "
                f"got {self.time_scale!r}"
            )
        if self.transport not in ("pty", "tcp"):
            raise ConfigError(
                f"simulator.transport must be 'pty' or 'tcp', got {self.transport!r}"
            )
        if not (
            isinstance(self.ccd_temperature_k, int | float)
            and 50.0 <= self.ccd_temperature_k <= 350.0
        ):
            raise ConfigError(
                "simulator.ccd_temperature_k must be a temperature in kelvin in "
                f"[50, 350] (MEGARA's CCD runs at about 163 K), got "
                f"{self.ccd_temperature_k!r}"
            )
        if self.cover_initial not in ("open", "closed"):
            raise ConfigError(
                "simulator.cover_initial must be 'open' or 'closed', "
                f"got {self.cover_initial!r}"
            )

    def argv(self) -> list[str]:
        """Command-line options for ``megara-dark simulate``."""
        args = [
            "--transport", self.transport,
            "--time-scale", repr(self.time_scale),
            "--seed", str(self.seed),
            "--ccd-temperature", repr(self.ccd_temperature_k),
            "--readout-s", repr(self.readout_s),
            "--cover-motion-s", repr(self.cover_motion_s),
            "--cover-initial", self.cover_initial,
        ]  # fmt: skip
        if self.scenario is not None:
            args += ["--scenario", str(self.scenario)]
        return args


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How the sequencer paces and polices a run.

    Attributes
    ----------
    retake_limit
        Invalid frames (interlock not closed) retaken per block, at most.
    poll_s
        Seconds of device time between status polls while exposing.
    cover_poll_s
        Seconds of device time between cover read-backs during long darks.
    readout_s
        Expected controller readout time (device seconds), for timeouts.
    timeout_margin_s
        Wall seconds added to every exposure and readout timeout.
    """

    retake_limit: int = 2
    poll_s: float = 1.0
    cover_poll_s: float = 10.0
    readout_s: float = 40.0
    timeout_margin_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.retake_limit <= 100:
            raise ConfigError(
                f"run.retake_limit must be 0 to 100, got {self.retake_limit!r}"
            )
        for name in ("poll_s", "cover_poll_s", "readout_s", "timeout_margin_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"run.{name} must be a finite number > 0, got {value!r}"
                )


@dataclass(frozen=True, kw_only=True)
class ReduceSettings:
    """The ``[reduce]`` table: how the run reduces its blocks.

    Attributes
    ----------
    min_frames
        Fewest usable frames a block may be reduced from: the same number,
        with the same meaning, as ``megara-dark reduce --min-frames``. A block
        with fewer ``nframes`` is refused before the first exposure.
    qc_config
        QC thresholds and frame-check settings (the TOML of
        ``megara-dark reduce --qc-config``), relative to the configuration
        file; None: the defaults.
    """

    min_frames: int = 3
    qc_config: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_frames <= 500:
            raise ConfigError(
                f"reduce.min_frames must be 1 to 500, got {self.min_frames!r}"
            )


@dataclass(frozen=True, kw_only=True)
class InstrumentConfig:
    """Everything the run needs to know about the instrument.

    ``devices`` is None when the built-in simulators are to be started.
    """

    devices: Mapping[str, str] | None = None
    simulator: SimulatorOptions = field(default_factory=SimulatorOptions)
    ccd: Mapping[str, Any] = field(default_factory=dict)
    cover: Mapping[str, Any] = field(default_factory=dict)
    run: RunSettings = field(default_factory=RunSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    reduce: ReduceSettings = field(default_factory=ReduceSettings)
    source: str = "built-in defaults (simulators)"

    @property
    def simulated(self) -> bool:
        return self.devices is None

    @property
    def time_scale(self) -> float:
        """Device seconds per wall second (1 for real hardware)."""
        return self.simulator.time_scale if self.simulated else 1.0

    def ccd_config(self, url: str) -> CcdConfig:
        config: CcdConfig = _build(CcdConfig, self.ccd, "ccd", url=url)
        return config

    def cover_config(self, url: str, name: str) -> CoverConfig:
        config: CoverConfig = _build(
            CoverConfig, self.cover, "cover", url=url, name=name
        )
        return config


def _schema(cls: type[Any]) -> Schema:
    try:
        return _SCHEMAS[cls]
    except KeyError:
        raise TypeError(
            f"{cls.__name__} has no entry in sequencer.config._SCHEMAS: give each "
            "of its fields a type and range there"
        ) from None


def _build(cls: type[Any], table: Mapping[str, Any], where: str, **given: Any) -> Any:
    values = _schema(cls).table(where, table)
    try:
        return cls(**values, **given)
    except TypeError as err:
        raise ConfigError(f"[{where}]: {err}") from err


def _table(doc: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: [{key}] must be a table")
    return value


def _typed(cls: type[Any], table: Mapping[str, Any], where: str) -> Any:
    return cls(**_schema(cls).table(where, table))


#: The type and range of every field read from the TOML, per table. Bounds
#: are finite so that no value can overflow a timer once the run has started.
_SCHEMAS: dict[type[Any], Schema] = {
    CcdConfig: CCD_SCHEMA,
    CoverConfig: COVER_SCHEMA,
    SimulatorOptions: Schema(
        SimulatorOptions,
        {
            "time_scale": Number(
                0.001, 1e6, what="a number", note="device seconds per wall second"
            ),
            "seed": Number(0, MAX_SEED, integer=True),
            "ccd_temperature_k": Number(
                50.0,
                350.0,
                what="a temperature in kelvin",
                note="MEGARA's CCD runs at about 163 K",
            ),
            "readout_s": Number(0.0, 3600.0, what="seconds", note="1 hour"),
            "cover_motion_s": Number(0.0, 3600.0, what="seconds", note="1 hour"),
            "cover_initial": Choice(("open", "closed")),
            "transport": Choice(("pty", "tcp")),
            "scenario": FilePath(),
            "run_key": Number(0, (1 << 63) - 1, integer=True),
        },
    ),
    RunSettings: Schema(
        RunSettings,
        {
            "retake_limit": Number(0, 100, integer=True),
            "poll_s": seconds(3600.0, "device seconds; 1 hour"),
            "cover_poll_s": seconds(3600.0, "device seconds; 1 hour"),
            "readout_s": seconds(3600.0, "device seconds; 1 hour"),
            "timeout_margin_s": seconds(),
        },
    ),
}


def _input_file(table: dict[str, Any], name: str, key: str, base: Path) -> None:
    """Check that ``table[key]`` (relative to ``base``) names a regular file;
    make it absolute. Refusals name the path as written."""
    raw = table.get(key)
    if raw is None:
        return
    given = TABLE_SCHEMAS[name].value(name, key, raw)  # printable, bounded
    where = f"[{name}] {key}"
    check_user_file(base / given, where)  # follows links: a loop is refused
    table[key] = str(resolved(base, str(given), where))


#: TOML integers are signed 64-bit ("an integer that cannot be represented
#: losslessly must be an error", TOML 1.0); tomllib reads integers of any
#: size. Bounded here, over the whole document, no number a key holds can
#: overflow a float or a timer later, whatever its table.
INT64_RANGE = (-(2**63), 2**63 - 1)


def _key_path(parts: tuple[str, ...]) -> str:
    if len(parts) == 1:
        return parts[0]
    return f"[{'.'.join(parts[:-1])}] {parts[-1]}"


def check_integers(doc: Mapping[str, Any]) -> None:
    """Refuse any integer of ``doc`` outside 64 bits, naming its key.

    The walk is iterative: a document nested as deep as the parser allows
    is walked without recursion.
    """
    stack: list[tuple[tuple[str, ...], Any]] = [((), doc)]
    while stack:
        parts, value = stack.pop()
        if isinstance(value, Mapping):
            stack += [((*parts, str(k)[:60]), v) for k, v in value.items()]
        elif isinstance(value, list):
            last = parts[-1] if parts else ""
            stack += [((*parts[:-1], f"{last}[{i}]"), v) for i, v in enumerate(value)]
        elif isinstance(value, int) and not INT64_RANGE[0] <= value <= INT64_RANGE[1]:
            raise ConfigError(
                f"{_key_path(parts)}: got {shown(value)}; a TOML integer is at "
                "most 64 bits (-2**63 to 2**63-1), and no setting takes one near that"
            )


def _one_line(text: str) -> str:
    """``text`` with its line breaks escaped: a TOML key may hold one."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


_SCHEMAS[ReduceSettings] = Schema(
    ReduceSettings,
    {"min_frames": Number(1, 500, integer=True), "qc_config": FilePath()},
)

#: The schema of each TOML table checked field by field, by table name.
TABLE_SCHEMAS: Mapping[str, Schema] = {
    "ccd": CCD_SCHEMA,
    "cover": COVER_SCHEMA,
    "simulator": _SCHEMAS[SimulatorOptions],
    "run": _SCHEMAS[RunSettings],
    "reduce": _SCHEMAS[ReduceSettings],
}


def _reduce_settings(table: Mapping[str, Any], base: Path) -> ReduceSettings:
    values = dict(table)
    _input_file(values, "reduce", "qc_config", base)
    settings: ReduceSettings = _typed(ReduceSettings, values, "reduce")
    return settings


def parse_config(
    doc: Mapping[str, Any], *, source: str, base: Path
) -> InstrumentConfig:
    """Validate a parsed TOML document."""
    allowed = {"devices", "simulator", "ccd", "cover", "run", "verify", "reduce"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ConfigError(
            f"{source}: unknown table(s) {_one_line(', '.join(unknown))}; allowed: "
            f"{', '.join(sorted(allowed))}"
        )
    try:
        check_integers(doc)
        devices = None
        if "devices" in doc:
            if "simulator" in doc:
                raise ConfigError("give either [devices] or [simulator], not both")
            table = _table(doc, "devices", source)
            missing = [k for k in DEVICE_KEYS if not isinstance(table.get(k), str)]
            extra = sorted(set(table) - set(DEVICE_KEYS))
            if missing or extra:
                raise ConfigError(
                    "[devices] needs exactly ccd, cover_left and cover_right as "
                    f"URL strings (missing: {missing or 'none'}, "
                    f"unknown: {extra or 'none'})"
                )
            devices = dict(table)
        sim_table = dict(_table(doc, "simulator", source))
        _input_file(sim_table, "simulator", "scenario", base)
        config = InstrumentConfig(
            devices=devices,
            simulator=_typed(SimulatorOptions, sim_table, "simulator"),
            ccd=_table(doc, "ccd", source),
            cover=_table(doc, "cover", source),
            run=_typed(RunSettings, _table(doc, "run", source), "run"),
            verify=parse_verify(_table(doc, "verify", source), base),
            reduce=_reduce_settings(_table(doc, "reduce", source), base),
            source=source,
        )
        # Build the driver configs once so that bad values fail now.
        config.ccd_config("check://")
        config.cover_config("check://", "left")
    except ConfigError as err:
        raise ConfigError(f"{source}: {_one_line(str(err))}") from None
    return config


def parse_config_text(text: str, *, source: str, base: Path) -> InstrumentConfig:
    """Parse and validate the text of an instrument configuration.

    The one TOML reader of the configuration (:func:`load_config` and a run
    folder's recorded copy alike): every way a text can fail to parse is
    one ConfigError line, never a traceback.
    """
    where = shown_path(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML ({err})") from err
    except RecursionError:
        raise ConfigError(
            f"{where}: not valid TOML (arrays or tables nested too deeply to "
            "read; the configuration is a few flat tables)"
        ) from None
    except ValueError:  # an integer of more than 4300 digits
        raise ConfigError(
            f"{where}: not valid TOML (an integer of more than 4300 digits; a TOML "
            "integer is at most 64 bits)"
        ) from None
    return parse_config(doc, source=source, base=base)


def load_config(path: Path | None) -> InstrumentConfig:
    """Read the instrument configuration (None: the built-in simulators)."""
    if path is None:
        return InstrumentConfig()
    text = read_user_text(path, "instrument configuration")
    return parse_config_text(text, source=str(path), base=path.parent)
