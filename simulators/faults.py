"""Faults as data: what goes wrong, on which device, and when.

A scenario file is YAML::

    faults:
      - device: cover_left          # ccd | cover_left | cover_right
        kind: cover_jam
        after_commands: 3           # fires from the 4th command on this device
      - device: ccd
        kind: short_fetch
        on_readout: 2               # the 2nd readout of the run
        params: {fraction: 0.25}
      - device: ccd
        kind: temperature_excursion
        at_time: 1800.0             # simulated seconds since start
        params: {delta_k: 12.0, duration_s: 600.0}
      - device: ccd
        kind: no_reply
        on_command: FETCH           # from the device's 2nd FETCH on
        nth: 2

A fault is *armed* until its trigger is met; it then fires ``times`` times
(default 1) and is spent. Triggers combine with AND; a fault with no trigger
fires at the first opportunity. ``on_command`` names a command of the
device's wire protocol (an Archon verb such as ``FETCH``, ``LOCK`` or
``RELEASETIMING``; an Alnitak command such as ``CLOSE`` or ``STATUS``): the
trigger holds once the device has received that command ``nth`` times
(default 1), so a fault is placed by a protocol event rather than by a count
of all commands (``after_commands``), which depends on how often the
sequencer polls. Devices consult the :class:`FaultBook` at the
points where each kind can happen (see :class:`FaultKind`).

``python -m simulators.faults check SCENARIO.yaml ...`` checks scenario files
against the catalogue; with no file it checks a JSON list of ``[where,
[fault, ...]]`` pairs read from stdin (what an engineering campaign sends
before its first run, since the sequencer does not import the simulators).
The first mistake is printed as one line on stderr, exit status 2.
"""

from __future__ import annotations

import collections
import enum
import json
import math
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError, shown_path
from drivers.files import read_user_text
from drivers.protocol.archon import Verb
from drivers.protocol.cover import Command as CoverCommand
from drivers.safeyaml import load_yaml

DEVICES = ("ccd", "cover_left", "cover_right")
#: The command names ``on_command`` may give, per device (its wire protocol's).
COMMANDS: dict[str, frozenset[str]] = {
    "ccd": frozenset(v.value for v in Verb),
    "cover_left": frozenset(c.name for c in CoverCommand),
    "cover_right": frozenset(c.name for c in CoverCommand),
}


class FaultKind(enum.Enum):
    """The catalogue of injectable faults, with the parameters each one reads."""

    #: cover half stops mid-travel on its next move; status C=0, motor stopped.
    COVER_JAM = "cover_jam"
    #: cover half moves ``factor`` (default 5) times slower on its next move.
    COVER_SLOW = "cover_slow"
    #: cover half ends its next move with Alnitak status C=3 (timed out).
    COVER_TIMEOUT = "cover_timeout"
    #: shutter opens and will not close (commands are acknowledged, status OPEN).
    SHUTTER_STUCK_OPEN = "shutter_stuck_open"
    #: the device swallows the reply to one command (the command is executed).
    NO_REPLY = "no_reply"
    #: one reply has its bytes scrambled (terminator kept).
    GARBLED_REPLY = "garbled_reply"
    #: one reply arrives ``delay_s`` wall-clock seconds late (default 3).
    LATE_REPLY = "late_reply"
    #: the link drops after ``fraction`` (default 0.5) of a readout's bytes.
    DISCONNECT_READOUT = "disconnect_readout"
    #: a FETCH reply stops after ``fraction`` (default 0.5) of a frame's bytes;
    #: the connection stays up and the rest is never sent.
    SHORT_FETCH = "short_fetch"
    #: CCD temperature rises by ``delta_k`` K (default 10) for ``duration_s``.
    TEMPERATURE_EXCURSION = "temperature_excursion"
    #: ``flux`` e-/s/pix (default 5) of light reach the detector for ``duration_s``.
    LIGHT_LEAK = "light_leak"


#: Fault kinds that last over a window of simulated time instead of firing once.
WINDOWED = frozenset({FaultKind.TEMPERATURE_EXCURSION, FaultKind.LIGHT_LEAK})


@dataclass(frozen=True)
class ParamRange:
    """The values a fault parameter may take: ``low <= value <= high``."""

    low: float
    high: float
    integer: bool = False

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        return f"{what} in [{_plain(self.low)}, {_plain(self.high)}]"


def _plain(value: float) -> str:
    """``1000000000`` rather than ``1e+09``; ``0.5`` as it is."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


#: Longest simulated window of a windowed fault (about 30 years), seconds.
_MAX_WINDOW_S = 1.0e9
#: Every parameter each kind reads, and its range (docs/operations.md).
PARAMS: dict[FaultKind, dict[str, ParamRange]] = {
    FaultKind.COVER_JAM: {"at": ParamRange(0.0, 1.0)},
    FaultKind.COVER_SLOW: {"factor": ParamRange(1.0, 1000.0)},
    FaultKind.COVER_TIMEOUT: {"at": ParamRange(0.0, 1.0)},
    FaultKind.SHUTTER_STUCK_OPEN: {},
    FaultKind.NO_REPLY: {},
    FaultKind.GARBLED_REPLY: {},
    FaultKind.LATE_REPLY: {"delay_s": ParamRange(0.0, 120.0)},
    FaultKind.DISCONNECT_READOUT: {"fraction": ParamRange(0.0, 1.0)},
    FaultKind.SHORT_FETCH: {"fraction": ParamRange(0.0, 1.0)},
    FaultKind.TEMPERATURE_EXCURSION: {
        "delta_k": ParamRange(-100.0, 100.0),
        "duration_s": ParamRange(0.0, _MAX_WINDOW_S),
    },
    FaultKind.LIGHT_LEAK: {
        "flux": ParamRange(0.0, 1.0e6),
        "duration_s": ParamRange(0.0, _MAX_WINDOW_S),
    },
}

#: Ranges of the trigger fields (integers but ``at_time``).
TRIGGERS: dict[str, ParamRange] = {
    "after_commands": ParamRange(0, 10**9, integer=True),
    "at_time": ParamRange(0.0, _MAX_WINDOW_S),
    "on_readout": ParamRange(1, 10**9, integer=True),
    "times": ParamRange(1, 10**6, integer=True),
}
#: Range of ``nth`` (given with ``on_command`` only).
NTH = ParamRange(1, 10**9, integer=True)


def _in_range(value: object, allowed: ParamRange) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if allowed.integer and not isinstance(value, int):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return allowed.low <= value <= allowed.high


_DEFAULT_DURATION_S = math.inf


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One scheduled fault.

    Parameters
    ----------
    device
        ``ccd``, ``cover_left`` or ``cover_right``.
    kind
        What goes wrong.
    after_commands
        Fires only once the device has received more than this many commands.
    at_time
        Fires only from this simulated time on (seconds since start).
    on_readout
        Fires only on this readout (1-based) of the CCD.
    on_command, nth
        Fires only once the device has received the command ``on_command``
        (a name of its protocol) ``nth`` times (default 1).
    times
        How many times the fault fires before it is spent.
    params
        Kind-specific numbers (see :class:`FaultKind`).
    """

    device: str
    kind: FaultKind
    after_commands: int | None = None
    at_time: float | None = None
    on_readout: int | None = None
    on_command: str | None = None
    nth: int | None = None
    times: int = 1
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"fault {self.kind.value!r} on {self.device!r}"
        if self.device not in DEVICES:
            raise ConfigError(
                f"fault device {self.device!r} is unknown; expected one of "
                f"{', '.join(DEVICES)}"
            )
        for key, allowed in TRIGGERS.items():
            value = getattr(self, key)
            if value is not None and not _in_range(value, allowed):
                raise ConfigError(
                    f"{where}: {key} must be {allowed.describe()}, got {value!r}"
                )
        self._check_command(where)
        known = PARAMS[self.kind]
        for key, value in self.params.items():
            if key not in known:
                takes = ", ".join(known) if known else "none"
                raise ConfigError(
                    f"{where}: unknown parameter {key!r}; {self.kind.value} takes "
                    f"{takes}"
                )
            if not _in_range(value, known[key]):
                raise ConfigError(
                    f"{where}: parameter {key!r} must be {known[key].describe()}, "
                    f"got {value!r}"
                )

    def _check_command(self, where: str) -> None:
        if self.on_command is None:
            if self.nth is not None:
                raise ConfigError(f"{where}: nth counts on_command; give both")
            return
        allowed = COMMANDS[self.device]
        if self.on_command not in allowed:
            raise ConfigError(
                f"{where}: on_command {self.on_command!r} is no command of "
                f"{self.device}; expected one of {', '.join(sorted(allowed))}"
            )
        if self.nth is not None and not _in_range(self.nth, NTH):
            raise ConfigError(
                f"{where}: nth must be {NTH.describe()}, got {self.nth!r}"
            )

    def param(self, name: str, default: float) -> float:
        """A kind-specific parameter, or its default."""
        return float(self.params.get(name, default))

    def triggered(
        self,
        *,
        commands: int,
        sim_time: float,
        readout: int | None,
        received: Mapping[str, int] | None = None,
    ) -> bool:
        """Whether the trigger conditions hold at this moment.

        ``received`` counts the commands the device has received, by name.
        """
        if self.after_commands is not None and commands <= self.after_commands:
            return False
        if self.at_time is not None and sim_time < self.at_time:
            return False
        if self.on_command is not None:
            count = (received or {}).get(self.on_command, 0)
            if count < (self.nth or 1):
                return False
        return self.on_readout is None or readout == self.on_readout

    def to_dict(self) -> dict[str, Any]:
        """The scenario-file form of this fault."""
        out: dict[str, Any] = {"device": self.device, "kind": self.kind.value}
        for key in ("after_commands", "at_time", "on_readout", "on_command", "nth"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.times != 1:
            out["times"] = self.times
        if self.params:
            out["params"] = dict(self.params)
        return out


_FAULT_KEYS = {
    "device",
    "kind",
    "after_commands",
    "at_time",
    "on_readout",
    "on_command",
    "nth",
    "times",
    "params",
}


def fault_from_dict(raw: object, where: str = "fault") -> Fault:
    """Build a :class:`Fault` from its scenario-file mapping, or raise ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _FAULT_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(_FAULT_KEYS))}"
        )
    for key in ("device", "kind"):
        if key not in raw:
            raise ConfigError(f"{where}: missing required key {key!r}")
    try:
        kind = FaultKind(raw["kind"])
    except ValueError:
        allowed = ", ".join(k.value for k in FaultKind)
        raise ConfigError(
            f"{where}: unknown fault kind {raw['kind']!r}; expected one of {allowed}"
        ) from None
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}: params must be a mapping of numbers")
    on_command = raw.get("on_command")
    if on_command is not None and not isinstance(on_command, str):
        raise ConfigError(
            f"{where}: on_command must be a command name, got {on_command!r}"
        )
    for key in ("after_commands", "on_readout", "nth", "times"):
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int)
        ):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    at_time = raw.get("at_time")
    if at_time is not None and (
        isinstance(at_time, bool) or not isinstance(at_time, (int, float))
    ):
        raise ConfigError(f"{where}: at_time must be a number, got {at_time!r}")
    try:
        return Fault(
            device=str(raw["device"]),
            kind=kind,
            after_commands=raw.get("after_commands"),
            at_time=None if at_time is None else float(at_time),
            on_readout=raw.get("on_readout"),
            on_command=on_command,
            nth=raw.get("nth"),
            times=raw.get("times", 1),
            params=dict(params),
        )
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def load_scenario(path: Path) -> list[Fault]:
    """Read a scenario YAML file; raise ConfigError naming the file on any problem."""
    # A regular file only (a named pipe would block the read for ever), its
    # keys each given once.
    text = read_user_text(path, "scenario")
    doc = load_yaml(text, source=f"scenario {shown_path(path)}")
    if doc is None:
        return []
    if not isinstance(doc, Mapping) or set(doc) - {"faults"}:
        raise ConfigError(
            f"scenario {path}: expected a mapping with one key 'faults' (a list)"
        )
    items = doc.get("faults") or []
    if not isinstance(items, list):
        raise ConfigError(f"scenario {path}: 'faults' must be a list")
    try:
        return [
            fault_from_dict(item, where=f"scenario {path}, fault #{i + 1}")
            for i, item in enumerate(items)
        ]
    except (RecursionError, OverflowError) as err:  # aliases nested without end
        raise ConfigError(
            f"scenario {path}: a fault's value is nested too deeply or too large "
            f"({type(err).__name__}); expected plain numbers and words"
        ) from err


@dataclass
class _Armed:
    fault: Fault
    remaining: int
    started_at: float | None = None  # simulated time a windowed fault began


class FaultBook:
    """The faults of one simulator process, consulted by the device models.

    Thread-safe: faults can be added at run time from the control channel
    while the device threads consult the book.
    """

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self.fired: list[tuple[float, Fault]] = []  # log of (sim time, fault)
        self._received: dict[str, collections.Counter[str]] = {}
        for fault in faults:
            self.add(fault)

    def received(self, device: str, command: str) -> None:
        """Count one command ``device`` received (for ``on_command`` triggers).

        The device models call this once a command is decoded, before they
        execute it (and before the reply faults are consulted).
        """
        with self._lock:
            self._received.setdefault(device, collections.Counter())[command] += 1

    def add(self, fault: Fault) -> None:
        """Arm one more fault."""
        with self._lock:
            self._armed.append(_Armed(fault, fault.times))

    def pending(self) -> list[Fault]:
        """Faults not yet spent (windowed faults count until their window ends)."""
        with self._lock:
            return [a.fault for a in self._armed if a.remaining > 0]

    def fire(
        self,
        device: str,
        kind: FaultKind,
        *,
        commands: int,
        sim_time: float,
        readout: int | None = None,
    ) -> Fault | None:
        """Take one firing of a one-shot fault whose trigger holds now, if any.

        Returns the fault (so the caller can read its params) or ``None``.
        """
        with self._lock:
            for armed in self._armed:
                f = armed.fault
                if (
                    armed.remaining > 0
                    and f.device == device
                    and f.kind is kind
                    and f.triggered(
                        commands=commands,
                        sim_time=sim_time,
                        readout=readout,
                        received=self._received.get(device),
                    )
                ):
                    armed.remaining -= 1
                    self.fired.append((sim_time, f))
                    return f
        return None

    def active(
        self,
        device: str,
        kind: FaultKind,
        *,
        commands: int,
        sim_time: float,
        readout: int | None = None,
    ) -> Fault | None:
        """The windowed fault of this kind in force at ``sim_time``, if any.

        A windowed fault's window opens when its trigger first holds and lasts
        ``duration_s`` simulated seconds (default: for ever). ``readout`` is the
        1-based number of the exposure in progress: a fault with ``on_readout``
        is in force during that exposure only.
        """
        with self._lock:
            for armed in self._armed:
                f = armed.fault
                if f.device != device or f.kind is not kind or armed.remaining <= 0:
                    continue
                if f.on_readout is not None and readout != f.on_readout:
                    continue  # a per-exposure fault is in force for that one only
                if armed.started_at is None:
                    if not f.triggered(
                        commands=commands,
                        sim_time=sim_time,
                        readout=readout,
                        received=self._received.get(device),
                    ):
                        continue
                    armed.started_at = sim_time
                    self.fired.append((sim_time, f))
                duration = f.param("duration_s", _DEFAULT_DURATION_S)
                if sim_time - armed.started_at <= duration:
                    return f
                armed.remaining = 0
        return None


def with_device(fault: Fault, device: str) -> Fault:
    """A copy of ``fault`` aimed at another device."""
    return replace(fault, device=device)


# -- checking scenarios from the command line ---------------------------------

USAGE = (
    "usage: python -m simulators.faults check [SCENARIO.yaml ...]  (no file: "
    "a JSON list of [where, [fault, ...]] pairs on stdin)"
)


def check_batches(batches: object) -> None:
    """Check ``[[where, [fault, ...]], ...]``; raise ConfigError on the first mistake.

    ``where`` says where the faults come from (it starts each message).
    """
    if not isinstance(batches, list):
        raise ConfigError("faults to check: expected a list of [where, faults] pairs")
    for item in batches:
        if not (isinstance(item, list) and len(item) == 2):
            raise ConfigError(
                f"faults to check: expected [where, faults], got {item!r}"
            )
        where, faults = item
        if not isinstance(faults, list):
            raise ConfigError(f"{where}: expected a list of fault mappings")
        for i, raw in enumerate(faults):
            fault_from_dict(raw, where=f"{where}, fault #{i + 1}")


def main(argv: list[str] | None = None) -> int:
    """``python -m simulators.faults check [SCENARIO.yaml ...]`` (module notes)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "check":
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if len(args) > 1:
            for name in args[1:]:
                load_scenario(Path(name))
        else:
            check_batches(json.load(sys.stdin))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except ValueError as err:  # not JSON
        print(f"simulators.faults: stdin is not JSON: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
