"""Campaign files: observing blocks run against the simulators, with expectations.

A campaign is one YAML document::

    campaign: night-regression          # a name (default: the file's stem)
    defaults:                           # merged into every run (optional)
      blocks: ../dark.yaml              # a blocks file, relative to this file,
                                        # or a list of observing-block mappings
      simulator: {time_scale: 4000, seed: 1}
      run: {retake_limit: 2}            # [run] settings of the configuration
    runs:
      - name: cold                      # unique; letters, digits, _ . -
        simulator: {ccd_temperature_k: 158.0}
        faults:                         # the simulators' fault catalogue
          - {device: ccd, kind: light_leak, on_readout: 4, params: {flux: 3}}
        expect:
          outcome: done                 # done | fault | aborted | error
          qa: PARTIAL                   # QA of the last block (optional)
          retakes: 0                    # over all blocks (optional)
          valid_frames: 6               # over all blocks (optional)
          verify: pass                  # verification verdict (optional)
          message: jam                  # in the fault message (optional)

``simulator`` takes the keys of the configuration's ``[simulator]`` table
(seed, ccd_temperature_k, time_scale, readout_s, cover_motion_s,
cover_initial, transport); ``run``, ``ccd`` and ``cover`` those of its
``[run]``, ``[ccd]`` and ``[cover]`` tables (the drivers' timeouts and
retries); ``faults`` the entries of a simulator scenario file (or
``scenario: path``). Everything is checked before the first run starts;
each mistake is one line naming the run and the key. The faults are checked
by the simulators' own validator (``python -m simulators.faults check``), in
a short child process: the sequencer does not import the simulators.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drivers.errors import ConfigError, one_line_yaml_error

OUTCOMES = ("done", "fault", "aborted", "error")
QA_FLAGS = ("GOOD", "PARTIAL", "BAD")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
#: The configuration tables a run (or the defaults) may set.
TABLES = ("simulator", "run", "ccd", "cover")
_RUN_KEYS = {"name", "blocks", *TABLES, "faults", "scenario", "expect"}
_EXPECT_KEYS = {"outcome", "qa", "retakes", "valid_frames", "verify", "message"}


@dataclass(frozen=True)
class Expectation:
    """What a run is expected to do (None: not checked)."""

    outcome: str
    qa: str | None = None
    retakes: int | None = None
    valid_frames: int | None = None
    verify: str | None = None
    message: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class RunSpec:
    """One run of a campaign, validated."""

    name: str
    blocks: Path | list[dict[str, Any]]
    simulator: dict[str, Any]
    run: dict[str, Any]
    faults: list[dict[str, Any]]
    expect: Expectation
    ccd: dict[str, Any] = field(default_factory=dict)
    cover: dict[str, Any] = field(default_factory=dict)

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        """The run's configuration tables ([ccd] and [cover] only when set)."""
        tables = {name: getattr(self, name) for name in TABLES}
        return {n: t for n, t in tables.items() if t or n in ("simulator", "run")}


@dataclass(frozen=True)
class Campaign:
    """A validated campaign file."""

    name: str
    source: Path
    runs: list[RunSpec] = field(default_factory=list)


def _where(source: Path, run: str | None, key: str | None = None) -> str:
    text = str(source)
    if run is not None:
        text += f", run {run!r}"
    if key is not None:
        text += f", {key}"
    return text


def _mapping(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return dict(value)


def _int(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: got {value!r}; expected an integer >= 0")
    return value


def _choice(value: object, allowed: tuple[str, ...], where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(
            f"{where}: got {value!r}; expected one of {', '.join(allowed)}"
        )
    return value


def parse_expect(raw: object, where: str) -> Expectation:
    """The ``expect`` mapping of one run."""
    doc = _mapping(raw, where)
    unknown = sorted(set(doc) - _EXPECT_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(_EXPECT_KEYS))}"
        )
    if "outcome" not in doc:
        raise ConfigError(f"{where}: 'outcome' is required ({', '.join(OUTCOMES)})")
    message = doc.get("message")
    if message is not None and not isinstance(message, str):
        raise ConfigError(f"{where}.message: got {message!r}; expected text")
    outcome = _choice(doc["outcome"], OUTCOMES, f"{where}.outcome")
    if outcome is None:
        raise ConfigError(f"{where}: 'outcome' is required ({', '.join(OUTCOMES)})")
    return Expectation(
        outcome=outcome,
        qa=_choice(doc.get("qa"), QA_FLAGS, f"{where}.qa"),
        retakes=_int(doc.get("retakes"), f"{where}.retakes"),
        valid_frames=_int(doc.get("valid_frames"), f"{where}.valid_frames"),
        verify=_choice(doc.get("verify"), ("pass", "fail"), f"{where}.verify"),
        message=message,
    )


def _blocks(value: object, base: Path, where: str) -> Path | list[dict[str, Any]]:
    if isinstance(value, str):
        path = (base / value).resolve()
        if not path.is_file():
            raise ConfigError(f"{where}: {value!r} is not a file (relative to {base})")
        return path
    if isinstance(value, list) and value and all(isinstance(b, Mapping) for b in value):
        return [dict(b) for b in value]
    raise ConfigError(
        f"{where}: got {value!r}; expected a blocks file path or a list of "
        "observing-block mappings"
    )


def _faults(run: dict[str, Any], base: Path, where: str) -> list[dict[str, Any]]:
    if "faults" in run and "scenario" in run:
        raise ConfigError(f"{where}: give either faults or scenario, not both")
    if "scenario" in run:
        path = base / str(run["scenario"])
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise ConfigError(
                f"{where}.scenario: cannot read {path} ({err.strerror})"
            ) from err
        except yaml.YAMLError as err:
            raise ConfigError(
                f"{where}.scenario: {path}: {one_line_yaml_error(err)}"
            ) from err
        faults = doc.get("faults", []) if isinstance(doc, Mapping) else doc
    else:
        faults = run.get("faults") or []
    if not isinstance(faults, list):
        raise ConfigError(f"{where}.faults: expected a list of fault mappings")
    return list(faults)


def parse_run(
    raw: object, index: int, defaults: dict[str, Any], base: Path, source: Path
) -> RunSpec:
    """One entry of ``runs``, merged with ``defaults``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}, run #{index}: expected a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{source}, run #{index}: name {name!r}; expected letters, digits, _ . -"
        )
    where = _where(source, name)
    unknown = sorted(set(raw) - _RUN_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(_RUN_KEYS))}"
        )
    merged = {**defaults, **raw}
    for key in TABLES:
        merged[key] = {
            **_mapping(defaults.get(key), f"{source}, defaults.{key}"),
            **_mapping(raw.get(key), f"{where}, {key}"),
        }
    if "blocks" not in merged:
        raise ConfigError(f"{where}: no blocks (give blocks here or in defaults)")
    if "expect" not in raw:
        raise ConfigError(f"{where}: no expect; every run states its expected outcome")
    if "scenario" in raw and "faults" in defaults and "faults" not in raw:
        merged.pop("faults")
    return RunSpec(
        name=name,
        blocks=_blocks(merged["blocks"], base, f"{where}, blocks"),
        simulator=merged["simulator"],
        run=merged["run"],
        faults=_faults(merged, base, where),
        expect=parse_expect(raw["expect"], f"{where}, expect"),
        ccd=merged["ccd"],
        cover=merged["cover"],
    )


def load_campaign(path: Path) -> Campaign:
    """Read and check a campaign file (see the module notes).

    Raises
    ------
    ConfigError
        Any mistake, as one line naming the file, run and key.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{path}: not valid YAML ({one_line_yaml_error(err)})"
        ) from err
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping with 'runs' (a list)")
    unknown = sorted(set(doc) - {"campaign", "defaults", "runs"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(map(str, unknown))}; allowed: "
            "campaign, defaults, runs"
        )
    name = doc.get("campaign", path.stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{path}: campaign {name!r}; expected letters, digits, _ . -")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{path}: 'runs' must be a non-empty list of runs")
    defaults = _mapping(doc.get("defaults"), f"{path}, defaults")
    bad = sorted(set(defaults) - (_RUN_KEYS - {"name", "expect"}))
    if bad:
        raise ConfigError(f"{path}, defaults: unknown key(s) {', '.join(bad)}")
    base = path.parent.resolve()
    specs = [parse_run(r, i + 1, defaults, base, path) for i, r in enumerate(runs)]
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"{path}: run name {spec.name!r} is used twice")
        seen.add(spec.name)
    return Campaign(name=name, source=path, runs=specs)


def check_faults(campaign: Campaign) -> None:
    """Check every run's faults against the simulators' catalogue.

    The simulators are a separate program (the sequencer does not import
    them): their own checker, ``python -m simulators.faults check``, reads
    the faults as JSON in a short child process.

    Raises
    ------
    ConfigError
        The first mistake, as one line naming the file, run and fault.
    """
    todo = [
        [_where(campaign.source, r.name, "faults"), r.faults]
        for r in campaign.runs
        if r.faults
    ]
    if not todo:
        return
    done = subprocess.run(
        [sys.executable, "-m", "simulators.faults", "check"],
        input=json.dumps(todo, default=str),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(lines[-1] if lines else "the fault check failed")
