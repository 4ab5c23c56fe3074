"""Fuzzing the input parsers: each raises only its documented error type.

* ``sequencer.blocks.parse_blocks`` (observing blocks, YAML): ConfigError.
* ``sequencer.config.load_config`` / ``parse_config`` (instrument TOML):
  ConfigError.
* ``reduce.blocks.load_blocks`` / ``parse_block`` (reduction blocks, YAML):
  InputError.
* ``reduce.settings.load_qc_config`` (QC thresholds TOML): reduce's
  ConfigError.

Fed arbitrary text, and structurally valid documents (known keys mixed with
random ones) holding random values, dumped with PyYAML or the TOML writer of
:mod:`tests.fuzz.documents`. What a parser accepts is checked too: ids are
file-safe and the values within their documented ranges.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ConfigError
from reduce import blocks as reduce_blocks
from reduce.errors import InputError, SettingsError
from reduce.settings import load_qc_config
from sequencer.blocks import MAX_EXPTIME_S, MAX_NFRAMES, Mode, parse_blocks
from sequencer.config import load_config, parse_config
from tests.fuzz.documents import (
    NUMBER,
    RAW_TEXT,
    TEXT,
    TOML_SCALAR,
    mapping,
    toml_dumps,
    values,
)
from tests.fuzz.strategies import fuzz

T = TypeVar("T")
SAFE_ID = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,63}")


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """A scratch folder shared by the examples (hypothesis reuses fixtures)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-parsers-") as name:
        base = Path(name)
        (base / "bias.fits").write_bytes(b"not really a FITS file")
        yield base


def dump_yaml(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, allow_unicode=True)


# -- observing blocks (sequencer) ---------------------------------------------------

#: Ids: random text, hostile names, and names that look right (some too long).
IDS = st.one_of(
    TEXT,
    st.integers(),
    st.from_regex(r"[A-Za-z0-9._+-][A-Za-z0-9_.+-]{0,70}", fullmatch=True),
)
OBSERVING_BLOCK = st.one_of(
    # anything: known keys with random values, and unknown keys
    mapping(
        {
            "id": st.one_of(IDS, values()),
            "instrument": st.one_of(st.just("MEGARA"), values()),
            "mode": st.one_of(st.sampled_from([m.value for m in Mode]), values()),
            "exptime": st.one_of(NUMBER, values()),
            "nframes": st.one_of(st.integers(-5, 600), values()),
            "requirements": st.one_of(
                mapping({"master_bias": st.one_of(st.just("bias.fits"), values())}),
                values(),
            ),
        }
    ),
    # nearly right (twice as likely): every key, values of the right type
    *[
        st.fixed_dictionaries(
            {
                "id": IDS,
                "instrument": st.just("MEGARA"),
                "mode": st.sampled_from([m.value for m in Mode]),
                "exptime": st.one_of(st.just(0.0), NUMBER),
                "nframes": st.integers(-5, 600),
            },
            optional={
                "requirements": st.fixed_dictionaries(
                    {"master_bias": st.one_of(st.just("bias.fits"), TEXT)}
                )
            },
        )
    ]
    * 2,
)


def outcome(parse: Callable[[], T], error: type[Exception]) -> T | Exception:
    """What ``parse()`` returns, or the ``error`` it raised (anything else fails)."""
    try:
        return parse()
    except error as err:
        return err


def check_safe_id(block_id: str) -> None:
    assert SAFE_ID.fullmatch(block_id)
    assert not block_id.startswith(".")


def check_observing_blocks(text: str, base: Path) -> None:
    blocks = outcome(
        lambda: parse_blocks(text, source="fuzz.yaml", base=base), ConfigError
    )
    if isinstance(blocks, Exception):
        assert "\n" not in str(blocks)  # one line, for the one-line error report
        return
    assert blocks
    for block in blocks:
        check_safe_id(block.id)
        assert 1 <= block.nframes <= MAX_NFRAMES
        assert math.isfinite(block.exptime)
        assert 0 <= block.exptime <= MAX_EXPTIME_S
        if block.master_bias is not None:
            assert block.master_bias.is_file()


@fuzz(150)
@given(RAW_TEXT)
def test_observing_blocks_from_any_text(folder: Path, text: str) -> None:
    check_observing_blocks(text, folder)


@fuzz(150)
@given(st.lists(OBSERVING_BLOCK, min_size=1, max_size=3))
def test_observing_blocks_with_random_keys_and_values(
    folder: Path, docs: list[dict[str, Any]]
) -> None:
    check_observing_blocks(dump_yaml(docs), folder)


# -- instrument configuration (sequencer) -------------------------------------------


def toml_values() -> st.SearchStrategy[Any]:
    return values(TOML_SCALAR).filter(lambda v: v is not None)


def table(known: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return st.one_of(mapping(known, toml_values()), toml_values())


NUMBERS = st.one_of(NUMBER.filter(lambda n: not abs(n) >= 2**63), TOML_SCALAR)
INSTRUMENT_CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "devices": table(
            {k: TOML_SCALAR for k in ("ccd", "cover_left", "cover_right")}
        ),
        "simulator": table(
            {
                k: NUMBERS
                for k in (
                    "time_scale",
                    "seed",
                    "ccd_temperature_k",
                    "readout_s",
                    "cover_motion_s",
                    "cover_initial",
                    "transport",
                    "scenario",
                )
            }
        ),
        "ccd": table(
            {
                "reply_timeout_s": NUMBERS,
                "retries": NUMBERS,
                "baudrate": NUMBERS,
                "block_timeout_s": NUMBERS,
                "temperature_range_k": st.one_of(
                    st.lists(NUMBERS, max_size=3), NUMBERS
                ),
            }
        ),
        "cover": table(
            {
                k: NUMBERS
                for k in ("reply_timeout_s", "retries", "motion_timeout_s", "poll_s")
            }
        ),
        "run": table(
            {
                k: NUMBERS
                for k in (
                    "retake_limit",
                    "poll_s",
                    "cover_poll_s",
                    "readout_s",
                    "timeout_margin_s",
                )
            }
        ),
        "verify": table(
            {
                "history": TOML_SCALAR,
                "limits": table(
                    {
                        k: table({"min": NUMBERS, "max": NUMBERS})
                        for k in ("dark_current", "read_noise", "bogus")
                    }
                ),
            }
        ),
    },
).flatmap(
    lambda known: st.dictionaries(TEXT, toml_values(), max_size=1).map(
        lambda extra: {**extra, **known}
    )
)


def check_instrument_config(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    config = outcome(lambda: load_config(path), ConfigError)
    if isinstance(config, Exception):
        assert "\n" not in str(config).strip()
        return
    assert config.run.retake_limit >= 0
    assert config.time_scale > 0


@fuzz(150)
@given(RAW_TEXT)
def test_instrument_config_from_any_text(folder: Path, text: str) -> None:
    check_instrument_config(folder / "instrument.toml", text)


@fuzz(150)
@given(INSTRUMENT_CONFIG)
def test_instrument_config_with_random_keys_and_values(
    folder: Path, doc: dict[str, Any]
) -> None:
    text = toml_dumps(doc)
    parsed = tomllib.loads(text)
    assert parsed.keys() == doc.keys()  # the writer wrote what was drawn
    check_instrument_config(folder / "instrument.toml", text)
    with contextlib.suppress(ConfigError):  # straight from the mapping too
        parse_config(parsed, source="fuzz.toml", base=folder)


# -- reduction blocks (reduce) ------------------------------------------------------

REDUCTION_BLOCK = st.one_of(
    mapping(
        {
            "id": st.one_of(IDS, values()),
            "instrument": st.one_of(st.just("MEGARA"), values()),
            "mode": st.one_of(
                st.sampled_from(["MegaraBiasImage", "MegaraDarkImage"]), values()
            ),
            "frames": st.one_of(st.lists(TEXT, max_size=4), values()),
            "requirements": st.one_of(mapping({"master_bias": values()}), values()),
            "enabled": values(),
        }
    ),
    st.fixed_dictionaries(
        {
            "id": IDS,
            "instrument": st.just("MEGARA"),
            "mode": st.sampled_from(["MegaraBiasImage", "MegaraDarkImage"]),
            "frames": st.lists(TEXT, max_size=4),
        },
        optional={"requirements": st.fixed_dictionaries({"master_bias": TEXT})},
    ),
)


def check_reduction_blocks(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    blocks = outcome(lambda: reduce_blocks.load_blocks(path), InputError)
    if isinstance(blocks, Exception):
        assert "\n" not in str(blocks)
        return
    for block in blocks:
        check_safe_id(block.id)
        assert all(isinstance(f, str) and "\x00" not in f for f in block.frames)


@fuzz(150)
@given(RAW_TEXT)
def test_reduction_blocks_from_any_text(folder: Path, text: str) -> None:
    check_reduction_blocks(folder / "reduce.yaml", text)


@fuzz(150)
@given(st.lists(REDUCTION_BLOCK, min_size=1, max_size=3))
def test_reduction_blocks_with_random_keys_and_values(
    folder: Path, docs: list[dict[str, Any]]
) -> None:
    check_reduction_blocks(folder / "reduce.yaml", dump_yaml(docs))


@fuzz(100)
@given(values())
def test_parse_block_of_any_value(doc: Any) -> None:
    with contextlib.suppress(InputError):
        reduce_blocks.parse_block(doc, "fuzz.yaml#0")


def test_undecodable_files_are_input_errors(folder: Path) -> None:
    path = folder / "binary.yaml"
    path.write_bytes(b"id: \xff\xfe\x00bad\n")
    with pytest.raises(InputError, match="UTF-8"):
        reduce_blocks.load_blocks(path)
    with pytest.raises(SettingsError, match="UTF-8"):
        load_qc_config(path)
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path)


# -- QC settings (reduce) -----------------------------------------------------------

LIMIT = table({"warn": NUMBERS, "bad": NUMBERS})
QC_SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "qc": table(
            {
                "hot_nsigma": NUMBERS,
                "dark_current": LIMIT,
                "read_noise": LIMIT,
                "hot_fraction": LIMIT,
                "overscan_drift": LIMIT,
            }
        ),
        "checks": table(
            {
                k: NUMBERS
                for k in (
                    "exptime_rtol",
                    "leak_nsigma",
                    "leak_tile_nsigma",
                    "leak_floor",
                    "reference_k",
                    "doubling_k",
                )
            }
        ),
    },
).flatmap(
    lambda known: st.dictionaries(TEXT, toml_values(), max_size=1).map(
        lambda extra: {**extra, **known}
    )
)


def check_qc_settings(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    settings = outcome(lambda: load_qc_config(path), SettingsError)
    if isinstance(settings, Exception):
        assert "\n" not in str(settings).strip()
        return
    qc, checks = settings
    assert qc.hot_nsigma > 0
    assert checks.doubling_k > 0


@fuzz(150)
@given(RAW_TEXT)
def test_qc_settings_from_any_text(folder: Path, text: str) -> None:
    check_qc_settings(folder / "qc.toml", text)


@fuzz(150)
@given(QC_SETTINGS)
def test_qc_settings_with_random_keys_and_values(
    folder: Path, doc: dict[str, Any]
) -> None:
    check_qc_settings(folder / "qc.toml", toml_dumps(doc))


# -- hostile YAML: nesting and alias bombs -------------------------------------------


def alias_bomb() -> str:
    """A flow list whose last item expands to 9**9 strings (387 million)."""
    levels = ["&a [" + ", ".join(["x"] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"&{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "[" + ", ".join(levels) + "]"


@pytest.mark.parametrize(
    "key", ["id", "instrument", "mode", "exptime", "nframes", "requirements"]
)
def test_alias_bombs_are_refused_without_expanding_them(folder: Path, key: str) -> None:
    """A value that expands to 387 million strings is refused in a short message."""
    fields = {
        "id": "b1",
        "instrument": "MEGARA",
        "mode": "MegaraBiasImage",
        "exptime": "0.0",
        "nframes": "1",
        "requirements": "{}",
    }
    fields[key] = alias_bomb()
    text = "".join(f"{k}: {v}\n" for k, v in fields.items())
    with pytest.raises(ConfigError) as caught:
        parse_blocks(text, source="bomb.yaml", base=folder)
    assert len(str(caught.value)) < 1000
    fields.pop("exptime")
    fields["frames"] = fields.pop("nframes") if key == "nframes" else "[]"
    path = folder / "bomb.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()), "utf-8")
    if key != "exptime":
        with pytest.raises(InputError) as refused:
            reduce_blocks.load_blocks(path)
        assert len(str(refused.value)) < 1000


@pytest.mark.parametrize("depth", [50, 20_000])
def test_deep_nesting_is_a_config_error(folder: Path, depth: int) -> None:
    text = "id: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ConfigError):
        parse_blocks(text, source="deep.yaml", base=folder)
    path = folder / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError):
        reduce_blocks.load_blocks(path)


def test_an_integer_too_long_to_read_is_a_config_error(folder: Path) -> None:
    """Python refuses to parse integers of more than 4300 digits (ValueError)."""
    text = "id: " + "1" * 5000 + "\n"
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_blocks(text, source="long.yaml", base=folder)
    path = folder / "long.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match="not valid YAML"):
        reduce_blocks.load_blocks(path)


@pytest.mark.parametrize(
    "text", ['"\\n" = []\n', '[ccd]\n"a\\nb" = 1\n', '[qc]\n"a\\nb" = 1\n']
)
def test_keys_holding_line_breaks_give_one_line_errors(folder: Path, text: str) -> None:
    """Found by the fuzzer: an unknown key was printed raw, over two lines."""
    path = folder / "keys.toml"
    path.write_text(text, encoding="utf-8")
    if text.startswith("[qc]"):
        with pytest.raises(SettingsError) as caught:
            load_qc_config(path)
    else:
        with pytest.raises(ConfigError) as caught:  # type: ignore[assignment]
            load_config(path)
    assert "\n" not in str(caught.value)
    assert "\\n" in str(caught.value)
