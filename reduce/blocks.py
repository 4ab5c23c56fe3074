"""Reduction blocks: the numina-style YAML that says what to reduce.

One YAML document per block, several documents run in order, as ``numina
run`` reads an observation result::

    id: bias_5
    instrument: MEGARA
    mode: MegaraBiasImage
    frames: [bias_00.fits, bias_01.fits, bias_02.fits]
    ---
    id: dark_900s
    instrument: MEGARA
    mode: MegaraDarkImage
    frames: [dark_00.fits, dark_01.fits, dark_02.fits]
    requirements:
      master_bias: obsidbias_5_results/master_bias.fits   # optional

Frame names are relative to the data folder; a relative ``master_bias`` is
looked up in the work folder first (where an earlier block wrote it), then
in the data folder. Parsing is pure: no file is opened here except the YAML.
"""

from __future__ import annotations

import logging
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reduce.errors import InputError
from reduce.rawframe import Mode
from reduce.safeyaml import load_yaml_file

log = logging.getLogger(__name__)

#: Block ids name the product folder ``obsid<ID>_results``: file-safe
#: characters only, no leading dot, at most 64 of them.
_ID_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,63}")
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 2, 60, 60
_KEYS = {"id", "instrument", "mode", "frames", "requirements"}
_OPTIONAL_KEYS = {"children", "enabled", "pipeline", "profile", "insconf"}


@dataclass(frozen=True)
class ReductionBlock:
    """One block to reduce.

    Attributes
    ----------
    id
        Block id (the products go to ``obsid<id>_results``).
    mode
        Bias or dark.
    frames
        Raw frame file names, relative to the data folder (or absolute).
    master_bias
        Master bias path from ``requirements`` (None: none named).
    source
        ``<yaml file>#<document index>``, for messages.
    """

    id: str
    mode: Mode
    frames: tuple[str, ...]
    master_bias: str | None
    source: str


def mode_named(name: str, block_id: str) -> Mode:
    """The mode called ``name`` (a block given by the sequencer, not YAML).

    Raises
    ------
    InputError
        ``name`` is not one of :class:`Mode`'s values.
    """
    try:
        return Mode(name)
    except ValueError:
        raise InputError(
            block_id, f"mode {name!r}, expected one of {[m.value for m in Mode]}"
        ) from None


def shown(value: Any) -> str:
    """``repr(value)`` cut short, in bounded work (a YAML alias bomb expands to
    millions of items, which a plain ``repr`` would never finish)."""
    return _SHOWN.repr(value)


def _file_name(value: Any) -> bool:
    """Whether ``value`` can name a file: text with no control character."""
    return isinstance(value, str) and bool(value) and value.isprintable()


def _require(doc: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in doc:
        raise InputError(where, f"missing key {key!r}; expected {sorted(_KEYS)}")
    return doc[key]


def parse_block(doc: Any, where: str) -> ReductionBlock:
    """Check one YAML document and turn it into a :class:`ReductionBlock`.

    Parameters
    ----------
    doc
        The parsed YAML document.
    where
        ``file#index`` for messages.
    """
    if not isinstance(doc, Mapping):
        raise InputError(
            where, f"block is a {type(doc).__name__}, expected a mapping of keys"
        )
    unknown = set(doc) - _KEYS - _OPTIONAL_KEYS
    if unknown:
        raise InputError(
            where,
            f"unknown key(s) {sorted(map(str, unknown))}; expected {sorted(_KEYS)}",
        )
    raw_id = _require(doc, "id", where)
    block_id = str(raw_id) if isinstance(raw_id, (str, int)) else ""
    if isinstance(raw_id, bool) or not _ID_RE.fullmatch(block_id):
        raise InputError(
            where,
            f"key 'id' is {shown(raw_id)}; expected 1-64 letters, digits or "
            "'_.+-', not starting with '.' (it names the folder obsid<ID>_results)",
        )
    where = f"{where} (block {block_id})"
    instrument = _require(doc, "instrument", where)
    if instrument != "MEGARA":
        raise InputError(
            where, f"key 'instrument' is {shown(instrument)}, expected MEGARA"
        )
    mode_name = _require(doc, "mode", where)
    try:
        # Only text can name a mode; Enum's own error would repr any value.
        mode = Mode(mode_name if isinstance(mode_name, str) else None)
    except ValueError:
        choices = [m.value for m in Mode]
        raise InputError(
            where, f"key 'mode' is {shown(mode_name)}, expected one of {choices}"
        ) from None
    frames = _require(doc, "frames", where)
    if not isinstance(frames, list) or not all(_file_name(f) for f in frames):
        raise InputError(
            where,
            "key 'frames' must be a list of file names (text without NUL, line "
            "breaks or other control characters)",
        )
    if len(set(frames)) != len(frames):
        raise InputError(where, "key 'frames' names a file twice")
    reqs = doc.get("requirements") or {}
    if not isinstance(reqs, Mapping):
        raise InputError(where, "key 'requirements' must be a mapping")
    bias = reqs.get("master_bias")
    extra = set(reqs) - {"master_bias"}
    if extra:
        raise InputError(
            where,
            f"unknown requirement(s) {sorted(map(str, extra))}; "
            "only 'master_bias' is used",
        )
    if bias is not None and not _file_name(bias):
        raise InputError(
            where,
            f"requirement 'master_bias' is {shown(bias)}; expected a file path "
            "(text without NUL, line breaks or other control characters)",
        )
    if mode is Mode.BIAS and bias is not None:
        raise InputError(where, "a MegaraBiasImage block takes no master_bias")
    return ReductionBlock(block_id, mode, tuple(frames), bias, where)


def load_blocks(path: str | Path) -> list[ReductionBlock]:
    """Read every block of a reduction YAML file, in order.

    Raises
    ------
    InputError
        If the file cannot be read or parsed, a block is malformed, no block
        is present, or two blocks share an id.
    """
    source = str(path)
    # A regular file, parsed with each key given once (reduce.safeyaml).
    docs = [d for d in load_yaml_file(path) if d is not None]
    if not docs:
        raise InputError(source, "no reduction block; expected at least one document")
    blocks = [parse_block(doc, f"{source}#{k}") for k, doc in enumerate(docs)]
    seen: set[str] = set()
    for block in blocks:
        if block.id in seen:
            raise InputError(block.source, f"block id {block.id!r} used twice")
        seen.add(block.id)
    return blocks
