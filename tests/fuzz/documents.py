"""Hypothesis strategies for YAML and TOML documents, and a small TOML writer.

The parsers under test read files a person wrote: the documents here are
either arbitrary text, or structurally valid documents (the right top-level
shape, the known keys mixed with random ones) holding random values: wrong
types, huge and non-finite numbers, NUL bytes, path tricks, nesting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

#: Text values people (or attackers) put where a name or a path belongs.
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        ".",
        "..",
        "../../evil",
        "/etc/passwd",
        "a\x00b",
        "a/b",
        "~",
        "MEGARA",
        "MegaraDarkImage",
        "MegaraBiasImage",
        "dark_900s",
        "x" * 300,
        "\u00e9\u4e2d",
        "1.0e+3",
        "nan",
    ]
)
#: Text a UTF-8 file can hold (no lone surrogates).
UTF8_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
TEXT = st.one_of(HOSTILE_TEXT, UTF8_TEXT)
NUMBER = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.0, 36000.0, 36000.5, 500, 501, 10**300]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)


def values(scalar: st.SearchStrategy[Any] = SCALAR) -> st.SearchStrategy[Any]:
    """Scalars, lists and mappings of them, a few levels deep."""
    return st.recursive(
        scalar,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
        ),
        max_leaves=8,
    )


def mapping(
    known: Mapping[str, st.SearchStrategy[Any]],
    extra: st.SearchStrategy[Any] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings holding some of the ``known`` keys, and up to two random ones.

    ``extra`` draws the random keys' values (default :func:`values`).
    """
    optional = st.fixed_dictionaries({}, optional=dict(known))
    unknown = st.dictionaries(
        TEXT, extra if extra is not None else values(), max_size=2
    )
    return st.tuples(optional, unknown).map(lambda pair: {**pair[1], **pair[0]})


#: Arbitrary text, and text made of YAML/TOML punctuation and keywords.
FRAGMENTS = st.sampled_from(
    [
        "\n", " ", "  ", ":", "- ", "---\n", "...\n", "[", "]", "{", "}", ",", "=",
        '"', "'", "#", "&a ", "*a", "!!python/object:os.system ", "!!binary ",
        "? ", "|", ">", "%YAML 1.1\n", "id", "mode", "frames", "[qc]", "[checks]",
        "[devices]", "[simulator]", "[run]", "[verify.limits]", "nan", "inf",
        "1e999", "0x1F", "true", "null", "~", "\x00", "\t", "\\u0000", "\ufeff",
    ]
)  # fmt: skip
RAW_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.lists(st.one_of(FRAGMENTS, UTF8_TEXT), max_size=40).map("".join),
)


# -- a TOML writer (tomllib only reads) ---------------------------------------


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and control characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return _toml_string(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
        )
        return "{" + items + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def toml_dumps(doc: Mapping[str, Any]) -> str:
    """TOML text of ``doc``: tables become ``[table]`` sections.

    TOML has no null: ``None`` values must have been left out by the caller.
    """
    lines = []
    tables = []
    for key, value in doc.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"[{_toml_key(key)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


#: TOML-able scalars (no null; integers within 64 bits).
TOML_SCALAR = st.one_of(
    st.booleans(),
    NUMBER.filter(lambda n: not isinstance(n, int) or -(2**63) <= n < 2**63),
    TEXT,
)
