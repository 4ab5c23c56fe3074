"""docs/operations.md documents the instrument configuration the code accepts.

The tables and keys are taken from the code (what ``parse_config`` accepts,
the schemas and dataclass fields behind each table), never from a list kept
here: a key added to the code and not to "The instrument configuration"
fails this test, and so does a key the section still documents after the
code dropped it. Both TOML examples of the section must load.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import ConfigError
from sequencer.config import DEVICE_KEYS, TABLE_SCHEMAS, InstrumentConfig, parse_config
from sequencer.engineering.limits import FIGURES, Limit, VerifySettings

ROOT = Path(__file__).parents[3]
DOC = ROOT / "docs" / "operations.md"
TITLE = "## The instrument configuration"
ROW_KEY = re.compile(r"^\|\s*`([A-Za-z0-9_.]+)`\s*\|", re.MULTILINE)
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section() -> str:
    """The text of the section, up to the next second-level heading."""
    text = DOC.read_text(encoding="utf-8")
    assert TITLE in text, f"{DOC} has no section {TITLE!r}"
    start = text.index(TITLE) + len(TITLE)
    end = text.find("\n## ", start)
    return text[start : end if end >= 0 else len(text)]


def subsection(heading: str) -> str:
    """The subsection of the section whose heading starts with ``heading``."""
    parts = re.split(r"^### ", section(), flags=re.MULTILINE)
    found = [part for part in parts[1:] if part.startswith(heading)]
    assert len(found) == 1, f"expected one subsection '### {heading}...'"
    return found[0]


def table_subsection(table: str) -> str:
    """The subsection of ``[table]`` (its heading: ``### `[table]`: ...``)."""
    return subsection(f"`[{table}]`")


def accepted_tables() -> set[str]:
    """The tables ``parse_config`` accepts, as its refusal of another lists them."""
    with pytest.raises(ConfigError) as info:
        parse_config({"no_such_table": {}}, source="probe", base=Path())
    allowed = str(info.value).rsplit("allowed:", 1)[1]
    return {name.strip() for name in allowed.split(",")}


def accepted_keys() -> dict[str, set[str]]:
    """Every key of every table, from the schemas and the dataclasses."""
    keys = {name: set(schema.rules) for name, schema in TABLE_SCHEMAS.items()}
    keys["devices"] = set(DEVICE_KEYS)
    keys["verify"] = {f.name for f in dataclasses.fields(VerifySettings)}
    return keys


def nested_keys(table: str) -> set[str]:
    """Keys of the tables inside ``table``, documented in its subsection:
    the figures of ``[verify.limits]``."""
    return set(FIGURES) if table == "verify" else set()


def documented(table: str) -> set[str]:
    """The keys of the rows of the subsection's tables (first cell)."""
    return set(ROW_KEY.findall(table_subsection(table)))


def test_the_tables_are_the_ones_parse_config_accepts() -> None:
    fields = {f.name for f in dataclasses.fields(InstrumentConfig)} - {"source"}
    assert accepted_tables() == fields
    assert set(accepted_keys()) == fields, "give each table's keys a source here"


@pytest.mark.parametrize("table", sorted(accepted_keys()))
def test_every_key_of_every_table_is_documented(table: str) -> None:
    keys = accepted_keys()[table] | nested_keys(table)
    seen = documented(table)
    assert not keys - seen, f"[{table}]: not documented: {sorted(keys - seen)}"
    assert not seen - keys, (
        f"[{table}]: documented, not accepted: {sorted(seen - keys)}"
    )


def test_every_limit_key_is_documented() -> None:
    text = table_subsection("verify")
    for name in (f.name for f in dataclasses.fields(Limit)):
        assert f"`{name}`" in text or f"{name} =" in text


def _shown(value: Any) -> str:
    """A default as the section writes it."""
    if value is None:
        return "none"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _defaults(table: str) -> dict[str, Any]:
    """Keys with a plain default (not a factory) and that default."""
    cls = VerifySettings if table == "verify" else TABLE_SCHEMAS[table].cls
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING
    }


@pytest.mark.parametrize("table", sorted(set(TABLE_SCHEMAS) | {"verify"}))
def test_documented_defaults_are_the_code_defaults(table: str) -> None:
    text = table_subsection(table)
    header = next(line for line in text.splitlines() if line.startswith("| key"))
    column = [c.strip() for c in header.strip("|").split("|")].index("default")
    rows = {
        m.group(1): [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if (m := ROW_KEY.match(line))
    }
    for key, default in _defaults(table).items():
        cell = rows[key][column].replace("`", "")
        assert cell.startswith(_shown(default)), (
            f"[{table}] {key}: documented default {cell!r}, code {_shown(default)!r}"
        )


def examples() -> list[str]:
    return TOML_BLOCK.findall(section())


COVERS = ("cover_left", "cover_right")


def test_the_section_has_both_examples() -> None:
    devices = [tomllib.loads(text).get("devices", {}) for text in examples()]
    assert any(
        d and all(str(v).startswith("socket://") for v in d.values()) for d in devices
    ), "no example of the simulators on TCP"
    assert any(
        str(d.get("ccd", "")).startswith("socket://")
        and "127.0.0.1" not in str(d["ccd"])
        and all(str(d.get(half, "")).startswith("/dev/") for half in COVERS)
        for d in devices
    ), (
        "no example of the real devices (the Archon on the network, covers on serial lines)"
    )


@pytest.mark.parametrize("index", range(len(examples())))
def test_examples_parse(index: int, tmp_path: Path) -> None:
    doc = tomllib.loads(examples()[index])
    for table, key in (("reduce", "qc_config"), ("simulator", "scenario")):
        name = doc.get(table, {}).get(key)
        if isinstance(name, str):  # files a configuration names must exist
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("", encoding="utf-8")
    config = parse_config(doc, source=f"example {index + 1}", base=tmp_path)
    if config.devices is not None:
        assert config.time_scale == 1.0  # as the section says of [devices]


def test_simulators_through_devices_say_what_changes() -> None:
    text = subsection("Simulators reached through `[devices]`")
    for said in ("time scale", "time_scale", "`SIMULATE = T`", "run_key", "reset"):
        assert said in text, f"nothing about {said!r}"
