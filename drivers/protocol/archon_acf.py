"""Archon configuration: the lines of its memory (RCONFIG/WCONFIG) and ACF files.

The controller holds 16384 configuration lines of ``KEY=VALUE`` text. The host
reads line ``xxxx`` (4 uppercase hex digits) with ``RCONFIGxxxx``, answered
``<idKEY=VALUE`` or, for an empty line, a bare ``<id``; it writes one with
``WCONFIGxxxxKEY=VALUE``, clears them all with ``CLEARCONFIG`` and makes them
take effect with ``APPLYALL`` (or ``APPLYCDS``, ``APPLYMODxx``, ``LOADTIMING``,
``LOADPARAMS``). On the wire a module key is written with ``/``
(``MOD1/XVP_ENABLE1``) and values carry no quotes.

An ACF file is the same configuration as an INI file, as STA's ArchonGUI saves
it (examples: sdss-archon's ``tests/data/BOSS_extra.acf``, MODS's
``azcam/system/MODS1R/archon/MODS1R.acf``): a ``[CONFIG]`` section (often also
``[SYSTEM]``) of ``KEY=VALUE`` lines, with ``\\`` instead of ``/`` in keys
(``MOD10\\HEATERAD=0``, one backslash) and values in double quotes when they
hold ``,``, ``;`` or ``=`` (``LINE1="RESET; IF ContinuousExposures GOTO
Continuous"``, ``PARAMETER0="Exposures=0"``). A value may be empty
(``CONSTANT2=``) or start with ``#`` (``CONSTANT0=# Clock levels``, a value,
not a comment). Clients send the ``[CONFIG]`` lines in file order, line ``n``
of the section to configuration line ``n``, after ``CLEARCONFIG``
(sdss-archon ``write_config``, azcam ``upload_config``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.errors import ConfigError, ProtocolError, shown
from drivers.protocol.archon import (
    MAX_CONFIG_LINES,
    MAX_PARAMETER,
    Verb,
    split_command,
)

log = logging.getLogger(__name__)

#: The section of an ACF file that holds the configuration lines.
CONFIG_SECTION = "CONFIG"

_DEVICE = "archon"
#: A key on the wire: names joined by ``/`` (``LINECOUNT``, ``MOD1/XVP_V1``).
_KEY_RE = re.compile(r"[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*")
_VALUE_RE = re.compile(r"[\x20-\x7e]*")
_SECTION_RE = re.compile(r"\[([^\]]+)\]")
#: A value holding one of these is quoted in an ACF file.
_QUOTED = frozenset(",;=")


@dataclass(frozen=True)
class ConfigLine:
    """Line ``index`` of the configuration memory, as ``WCONFIG`` writes it."""

    index: int
    key: str
    value: str

    def __post_init__(self) -> None:
        _check_index(self.index)
        _check_entry(self.key, self.value)


def _check_index(index: int) -> None:
    if not 0 <= index < MAX_CONFIG_LINES:
        raise ProtocolError(
            f"{_DEVICE}: configuration line {index!r}; expected 0..3FFF"
            f" ({MAX_CONFIG_LINES} lines)"
        )


def _check_entry(key: str, value: str) -> None:
    if _KEY_RE.fullmatch(key) is None or _VALUE_RE.fullmatch(value) is None:
        raise ProtocolError(
            f"{_DEVICE}: bad configuration line {shown(key)}={shown(value)};"
            " expected a KEY of letters, digits, '_' and '/' and a printable value"
        )


def config_line(index: int, key: str, value: str) -> str:
    """The ``WCONFIGxxxxKEY=VALUE`` text writing ``key=value`` to line ``index``."""
    line = ConfigLine(index, key, value)
    return f"WCONFIG{line.index:04X}{line.key}={line.value}"


def parse_config_line(text: str) -> ConfigLine:
    """The line written by a ``WCONFIG`` command's text (the simulator's side)."""
    verb, argument = split_command(text)
    if verb is not Verb.WCONFIG:
        raise ProtocolError(f"{_DEVICE}: {shown(text)} is no WCONFIG command")
    key, _, value = argument[4:].partition("=")
    return ConfigLine(int(argument[:4], 16), key, value)


def rconfig_command(index: int) -> str:
    """The ``RCONFIGxxxx`` text reading line ``index``."""
    _check_index(index)
    return f"RCONFIG{index:04X}"


def parse_rconfig(text: str) -> int:
    """The line read by an ``RCONFIG`` command's text (the simulator's side)."""
    verb, argument = split_command(text)
    if verb is not Verb.RCONFIG:
        raise ProtocolError(f"{_DEVICE}: {shown(text)} is no RCONFIG command")
    index = int(argument, 16)
    _check_index(index)
    return index


def encode_config_entry(entry: tuple[str, str] | None) -> str:
    """The payload of the ``RCONFIG`` reply for ``entry`` ('' for an empty line)."""
    if entry is None:
        return ""
    _check_entry(*entry)
    return f"{entry[0]}={entry[1]}"


def parse_config_entry(payload: str) -> tuple[str, str] | None:
    """``(key, value)`` of an ``RCONFIG`` reply's payload; None for an empty line."""
    if not payload:
        return None
    key, equals, value = payload.partition("=")
    if not equals:
        raise ProtocolError(
            f"{_DEVICE}: RCONFIG reply {shown(payload)} has no '='; expected"
            " KEY=VALUE or nothing"
        )
    _check_entry(key, value)
    return key, value


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _acf_entry(number: int, raw: str) -> tuple[str, str]:
    """Key (``/`` form) and unquoted value of ACF line ``number``."""
    key, equals, value = raw.partition("=")
    wire_key = key.strip().replace("\\", "/")
    wire_value = _unquote(value)
    if (
        not equals
        or _KEY_RE.fullmatch(wire_key) is None
        or _VALUE_RE.fullmatch(wire_value) is None
    ):
        raise ConfigError(
            f"archon ACF line {number}: {shown(raw)}; expected KEY=VALUE with a KEY"
            " of letters, digits, '_' and single '\\' or '/', and a printable value"
        )
    return wire_key, wire_value


def parse_acf(text: str) -> list[tuple[str, str]]:
    """The ``[CONFIG]`` lines of an ACF file, in order, as ``WCONFIG`` sends them.

    Keys come back with ``/`` (a file may use ``\\`` or ``/``), values without
    their quotes. Blank lines and lines starting with ``;`` or ``#`` (INI
    comments) are skipped; other sections are ignored.

    Raises
    ------
    ConfigError
        No ``[CONFIG]`` section, a line without ``=``, a bad key, a key given
        twice, or more than :data:`MAX_CONFIG_LINES` lines.
    """
    lines: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    section: str | None = None
    found = False
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in ";#":
            continue
        header = _SECTION_RE.fullmatch(stripped)
        if header is not None:
            section = header[1]
            found = found or section == CONFIG_SECTION
            continue
        if section != CONFIG_SECTION:
            continue
        key, value = _acf_entry(number, raw)
        if key in seen:
            raise ConfigError(
                f"archon ACF line {number}: {key} again (first on line {seen[key]});"
                " expected each key once"
            )
        seen[key] = number
        lines.append((key, value))
    if not found:
        raise ConfigError(f"archon ACF: no [{CONFIG_SECTION}] section")
    if len(lines) > MAX_CONFIG_LINES:
        raise ConfigError(
            f"archon ACF: {len(lines)} [CONFIG] lines; the controller holds"
            f" {MAX_CONFIG_LINES}"
        )
    return lines


def format_acf(lines: Iterable[tuple[str, str]]) -> str:
    """An ACF file holding ``lines`` (wire form) as ArchonGUI writes them."""
    out = [f"[{CONFIG_SECTION}]"]
    for key, value in lines:
        _check_entry(key, value)
        quote = (
            not _QUOTED.isdisjoint(value)
            or value != value.strip()
            or value.startswith('"')
        )
        out.append(key.replace("/", "\\") + "=" + (f'"{value}"' if quote else value))
    return "\n".join(out) + "\n"


# -- what a configuration means ----------------------------------------------------

_PARAMETER_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([0-9]+)\s*")
#: Timing parameters a host sets to run MEGARA's exposures (sdss-archon's set).
EXPOSURE_PARAMETERS = (
    "Exposures",
    "IntCS",
    "IntMS",
    "ReadOut",
    "AbortExposure",
    "OpenShutter",
    "DoFlush",
    "WaitCount",
    "AutoFlush",
)


def config_integer(
    values: dict[str, str], key: str, default: int, low: int, high: int
) -> int:
    """The integer of configuration line ``key`` (``default`` if absent)."""
    text = values.get(key, str(default)).strip()
    digits = len(text.lstrip("-").lstrip("0"))  # int() of 4300 digits raises
    if (
        not re.fullmatch(r"-?[0-9]+", text)
        or digits > len(str(max(abs(low), abs(high))))
        or not low <= int(text) <= high
    ):
        raise ConfigError(
            f"{_DEVICE}: {key}={text!r} in the configuration; expected an integer in"
            f" {low}..{high}"
        )
    return int(text)


def frame_size(
    linecount: int, pixelcount: int, taps: int, framemode: int
) -> tuple[int, int]:
    """Width and height of the frame buffer the taps fill.

    ``FRAMEMODE`` 0 and 1 put the taps side by side; 2 ("split") puts the first
    half across the top and the second half across the bottom (camerad's
    ``framemode``, sdss-archon's ``_get_ccd_data``).
    """
    split = framemode == 2 and taps > 1
    across = -(-taps // 2) if split else taps
    return pixelcount * across, linecount * (2 if split else 1)


def declared_parameters(values: dict[str, str]) -> dict[str, int]:
    """The timing parameters ``PARAMETERn="Name=value"`` declare, by upper name.

    Lines ``PARAMETER0`` .. ``PARAMETER<PARAMETERS-1>`` are read; an empty one
    or a comment (``PARAMETER14=# Switches`` in a real ACF) declares nothing.
    Names are matched without regard to case: sdss-archon upper-cases the
    whole command line (``FASTLOADPARAM INTCS 100``) and real controllers
    accept it.
    """
    count = config_integer(values, "PARAMETERS", 0, 0, MAX_CONFIG_LINES)
    declared: dict[str, int] = {}
    for n in range(count):
        match = _PARAMETER_RE.fullmatch(values.get(f"PARAMETER{n}", ""))
        if match is not None:
            digits = match[2].lstrip("0") or "0"
            too_long = len(digits) > len(str(MAX_PARAMETER))
            declared[match[1].upper()] = MAX_PARAMETER if too_long else int(digits)
    return declared


def check_megara_config(values: dict[str, str], *, rows: int, cols: int) -> None:
    """Refuse a configuration that does not make ``rows`` x ``cols`` 16-bit frames.

    ``values``: the configuration lines by upper-cased key. Also refused: a
    timing parameter of :data:`EXPOSURE_PARAMETERS` not declared.

    Raises
    ------
    ConfigError
        Naming the first line that disagrees.
    """
    taps = sum(
        1
        for n in range(config_integer(values, "TAPLINES", 0, 0, 16))
        if values.get(f"TAPLINE{n}", "").strip()
    )
    width, height = frame_size(
        config_integer(values, "LINECOUNT", 0, 0, 65535),
        config_integer(values, "PIXELCOUNT", 0, 0, 65535),
        taps,
        config_integer(values, "FRAMEMODE", 0, 0, 2),
    )
    sample = config_integer(values, "SAMPLEMODE", 0, 0, 1)
    if (width, height, sample) != (cols, rows, 0):
        raise ConfigError(
            f"LINECOUNT, PIXELCOUNT, TAPLINES, FRAMEMODE and SAMPLEMODE make frames"
            f" of {width} x {height} pixels of {16 << sample} bits; expected"
            f" {cols} x {rows} of 16 bits"
        )
    declared = declared_parameters(values)
    missing = [name for name in EXPOSURE_PARAMETERS if name.upper() not in declared]
    if missing:
        raise ConfigError(
            f"no PARAMETERn line declares {', '.join(missing)}; expected the timing"
            f" parameters {', '.join(EXPOSURE_PARAMETERS)}"
        )
