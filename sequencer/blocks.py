"""Observing blocks: what to take, in the MEGARA pipeline's (numina) YAML style.

One file may hold several YAML documents; they run in order::

    id: bias_run
    instrument: MEGARA
    mode: MegaraBiasImage
    exptime: 0.0
    nframes: 5
    ---
    id: dark_900s
    instrument: MEGARA
    mode: MegaraDarkImage
    exptime: 900.0           # seconds per frame
    nframes: 5
    requirements:
      master_bias: path/to/master_bias.fits   # optional

A dark block with no ``master_bias`` uses the product of the last bias block
before it in the same file. Every problem is found before any hardware moves,
and reported with the document, key, value and what is allowed.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError
from drivers.files import check_user_file, read_user_text, resolved
from drivers.protocol.archon import MAX_INTEGRATION_S
from drivers.safeyaml import load_yaml_documents
from reduce.rawframe import Mode

#: Longest dark exposure accepted (seconds): the longest the CCD controller's
#: timing parameters hold (2.9 h; longer ones are also almost certainly a unit
#: mistake, minutes or milliseconds typed as seconds).
MAX_EXPTIME_S = MAX_INTEGRATION_S
#: Most frames accepted in one block.
MAX_NFRAMES = 500

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 2, 60, 60
_KEYS = {"id", "instrument", "mode", "exptime", "nframes", "requirements"}
_REQUIREMENT_KEYS = {"master_bias"}


@dataclass(frozen=True, kw_only=True)
class ObservingBlock:
    """One validated observing block.

    Attributes
    ----------
    id
        Block identifier; products go to ``obsid<id>_results``.
    mode
        Dark or bias.
    exptime
        Exposure time per frame, seconds (0 for bias).
    nframes
        Number of valid frames to take.
    master_bias
        A master bias file given by the block, or ``None``.
    bias_from
        For a dark without ``master_bias``: the id of the bias block earlier in
        the same file whose product it uses.
    """

    id: str
    mode: Mode
    exptime: float
    nframes: int
    master_bias: Path | None = None
    bias_from: str | None = None
    #: Where the block was given (file, document, id), for messages.
    source: str = field(default="", compare=False)

    @property
    def is_dark(self) -> bool:
        return self.mode is Mode.DARK


def shown(value: Any) -> str:
    """``repr(value)`` cut short, in bounded work whatever ``value`` holds.

    A YAML alias bomb is a small file whose value expands to millions of
    items: a plain ``repr`` in an error message would never finish.
    """
    return _SHOWN.repr(value)


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (YAML reads this as text: write it with a dot, e.g. 1.0e+3)"
            except ValueError:
                pass
        raise ConfigError(
            f"{where}: key {key!r}: got {shown(value)}; expected a number{hint}"
        )
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise ConfigError(
            f"{where}: key {key!r}: got {shown(value)}; expected a number a "
            "float can hold"
        ) from None


def _path(where: str, key: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(
            f"{where}: key {key!r}: got {shown(raw)}; expected a file path"
        )
    if not raw.isprintable():
        raise ConfigError(
            f"{where}: key {key!r}: got {shown(raw)}; a file path holds no NUL, "
            "line break or other control character"
        )
    return raw


def _parse_one(
    doc: Any, where: str, base: Path, seen_ids: set[str], last_bias: str | None
) -> ObservingBlock:
    if not isinstance(doc, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping of keys ({', '.join(sorted(_KEYS))}), "
            f"got {type(doc).__name__}"
        )
    unknown = sorted(str(k) for k in set(doc) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_KEYS))}"
        )
    missing = sorted({"id", "instrument", "mode", "exptime", "nframes"} - set(doc))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")

    block_id = doc["id"]
    if (
        isinstance(block_id, bool)
        or not isinstance(block_id, (str, int))
        or not _ID_RE.fullmatch(str(block_id))
    ):
        raise ConfigError(
            f"{where}: key 'id': got {shown(block_id)}; expected 1-64 letters, "
            "digits, '_', '-' or '.', starting with a letter or digit (it names "
            "files and folders in the work folder)"
        )
    block_id = str(block_id)
    where = f"{where} (id {block_id!r})"
    if block_id in seen_ids:
        raise ConfigError(f"{where}: key 'id': {block_id!r} is used twice in the file")
    if doc["instrument"] != "MEGARA":
        raise ConfigError(
            f"{where}: key 'instrument': got {shown(doc['instrument'])}; "
            "expected 'MEGARA'"
        )
    try:
        # Only text can name a mode; Enum's own error would repr any value.
        mode = Mode(doc["mode"] if isinstance(doc["mode"], str) else None)
    except ValueError:
        allowed = ", ".join(m.value for m in Mode)
        raise ConfigError(
            f"{where}: key 'mode': got {shown(doc['mode'])}; expected one of {allowed}"
        ) from None

    exptime = _number(where, "exptime", doc["exptime"])
    if mode is Mode.BIAS and exptime != 0.0:
        raise ConfigError(
            f"{where}: key 'exptime': got {exptime!r}; a MegaraBiasImage block "
            "must have exptime 0"
        )
    if mode is Mode.DARK and not (
        math.isfinite(exptime) and 0 < exptime <= MAX_EXPTIME_S
    ):
        raise ConfigError(
            f"{where}: key 'exptime': got {shown(doc['exptime'])}; expected seconds "
            f"per frame, > 0 and <= {MAX_EXPTIME_S} (the controller's IntCS at"
            " its largest)"
        )

    nframes = doc["nframes"]
    if isinstance(nframes, bool) or not isinstance(nframes, int):
        raise ConfigError(
            f"{where}: key 'nframes': got {shown(nframes)}; expected an integer"
        )
    if not 1 <= nframes <= MAX_NFRAMES:
        raise ConfigError(
            f"{where}: key 'nframes': got {nframes}; expected 1 to {MAX_NFRAMES}"
        )

    requirements = doc.get("requirements") or {}
    if not isinstance(requirements, Mapping):
        raise ConfigError(f"{where}: key 'requirements': expected a mapping")
    unknown = sorted(str(k) for k in set(requirements) - _REQUIREMENT_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown requirement(s) {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_REQUIREMENT_KEYS))}"
        )
    master_bias = None
    bias_from = None
    if "master_bias" in requirements:
        if mode is Mode.BIAS:
            raise ConfigError(
                f"{where}: key 'requirements.master_bias': a bias block needs none"
            )
        raw = _path(where, "requirements.master_bias", requirements["master_bias"])
        key = f"{where}: key 'requirements.master_bias':"
        check_user_file(base / raw, key)  # named as written; links followed
        master_bias = resolved(base, raw, key)
    elif mode is Mode.DARK:
        if last_bias is None:
            raise ConfigError(
                f"{where}: a MegaraDarkImage block needs a master bias: give "
                "'requirements: {master_bias: FILE}' or put a MegaraBiasImage "
                "block before it in the same file"
            )
        bias_from = last_bias
    return ObservingBlock(
        id=block_id,
        mode=mode,
        exptime=exptime,
        nframes=nframes,
        master_bias=master_bias,
        bias_from=bias_from,
        source=where,
    )


def parse_blocks(text: str, *, source: str, base: Path) -> list[ObservingBlock]:
    """Validate the observing blocks of one YAML text.

    Parameters
    ----------
    text
        The file's content (one or more YAML documents).
    source
        Its name, for messages.
    base
        Folder that relative ``master_bias`` paths are relative to.
    """
    # Each key once per mapping: a second 'nframes' must not silently win.
    docs = [d for d in load_yaml_documents(text, source=source) if d is not None]
    if not docs:
        raise ConfigError(f"{source}: holds no observing block")
    blocks: list[ObservingBlock] = []
    last_bias: str | None = None
    for i, doc in enumerate(docs, start=1):
        block = _parse_one(
            doc, f"{source}, document {i}", base, {b.id for b in blocks}, last_bias
        )
        blocks.append(block)
        if block.mode is Mode.BIAS:
            last_bias = block.id
    return blocks


def load_blocks(path: Path) -> list[ObservingBlock]:
    """Read and validate an observing-block file."""
    text = read_user_text(path, "observing blocks")
    return parse_blocks(text, source=str(path), base=path.parent)
