"""Red-team properties: random damage to valid inputs never escapes as a traceback.

Each property starts from a valid input (an observing block, a reduction
block, an instrument configuration, QC settings, a real raw frame, a real
master bias), damages it at random (bytes inserted, deleted or replaced, a
line repeated, the file cut short, bits flipped in a header) and feeds it to
the reader the commands use. The reader must either accept it or raise its
documented error, as one line; nothing else may escape (no OverflowError,
RecursionError, ValueError, IndexError...), and nothing may hang.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import ConfigError
from reduce.blocks import load_blocks as load_reduction_blocks
from reduce.errors import InputError, SettingsError
from reduce.frames import inspect_frame
from reduce.masters import MasterKind, load_master
from reduce.rawframe import Mode as ReduceMode
from reduce.settings import load_qc_config
from sequencer.blocks import load_blocks
from sequencer.config import load_config
from tests.fuzz.strategies import fuzz
from tests.redteam.hostile_fits import FitsWorld, build_fits_world
from tests.redteam.hostile_inputs import BIAS, DARK, REDUCE

#: Pieces a hostile edit inserts: structure, numbers too large, control bytes.
TOKENS = [
    b"\x00", b"\xff", b"\xc3", b"\t", b"\r", b"\n", b"\n---\n", b":", b": ",
    b"[", b"]", b"{", b"}", b"[[[[[[[[[[", b"&a ", b"*a", b"<<: *a\n", b"!!",
    b"!!python/object/apply:os.system ['true']", b"nframes: 400\n", b"id: x\n",
    b"1" + b"0" * 400, b"1" + b"0" * 5000, b"-1", b"1e400", b".nan", b"nan",
    b"inf", b"=", b" = ", b'"', b"'", b"[run]\n", b"[[run]]\n", b"#",
]  # fmt: skip

EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "repeat-line", "cut"]),
    st.integers(0, 10_000),
    st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=12)),
)


def damaged(text: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    """``text`` after the edits, each at an offset taken modulo its length."""
    data = text
    for kind, where, piece in edits:
        at = where % (len(data) + 1)
        if kind == "insert":
            data = data[:at] + piece + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(piece) :]
        elif kind == "replace":
            data = data[:at] + piece + data[at + len(piece) :]
        elif kind == "repeat-line":
            lines = data.splitlines(keepends=True) or [b""]
            line = lines[at % len(lines)]
            data = (
                b"".join(lines[: at % len(lines)])
                + line
                + b"".join(lines[at % len(lines) :])
            )
        else:
            data = data[:at]
    return data


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="redteam-properties-") as name:
        base = Path(name)
        (base / "bias.fits").write_bytes(b"SIMPLE = not a FITS file")
        yield base


def accepted_or_refused(
    read: Callable[[], object], error: type[Exception], source: str
) -> None:
    """``read()`` returns, or raises ``error`` as one line naming ``source``."""
    try:
        read()
    except error as err:
        message = str(err)
        assert "\n" not in message.strip(), message
        assert source in message, message


TEXTS = {
    "observing blocks": (BIAS + "---\n" + DARK).encode(),
    "dark with master bias": (
        DARK + "requirements:\n  master_bias: bias.fits\n"
    ).encode(),
    "instrument configuration": (
        b"[simulator]\ntime_scale = 1000.0\nseed = 7\n[run]\nretake_limit = 2\n"
        b"poll_s = 1.0\n[ccd]\nreply_timeout_s = 2.0\ntemperature_range_k = [150.0, 180.0]\n"
        b"[reduce]\nmin_frames = 3\n[verify.limits]\ndark_current = {max = 5.0}\n"
    ),
    "reduction blocks": (REDUCE + "requirements: {master_bias: bias.fits}\n").encode(),
    "qc settings": (
        b"[qc]\nhot_nsigma = 5.0\ndark_current = { warn = 5.0, bad = 20.0 }\n"
        b"[checks]\nexptime_rtol = 1e-3\nreference_k = 163.0\n"
    ),
}


@fuzz(200)
@given(st.sampled_from(sorted(TEXTS)), st.lists(EDIT, min_size=1, max_size=6))
def test_damaged_text_inputs_are_read_or_refused_in_one_line(
    folder: Path, which: str, edits: list[tuple[str, int, bytes]]
) -> None:
    path = folder / f"input-{which.replace(' ', '-')}"
    path.write_bytes(damaged(TEXTS[which], edits))
    readers: dict[str, tuple[Callable[[], object], type[Exception]]] = {
        "observing blocks": (lambda: load_blocks(path), ConfigError),
        "dark with master bias": (lambda: load_blocks(path), ConfigError),
        "instrument configuration": (lambda: load_config(path), ConfigError),
        "reduction blocks": (lambda: load_reduction_blocks(path), InputError),
        "qc settings": (lambda: load_qc_config(path), SettingsError),
    }
    read, error = readers[which]
    accepted_or_refused(read, error, path.name)


# --- real frames -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fits_world() -> Iterator[FitsWorld]:
    with tempfile.TemporaryDirectory(prefix="redteam-properties-fits-") as name:
        yield build_fits_world(Path(name))


@pytest.fixture(scope="module")
def work_copies(fits_world: FitsWorld) -> Iterator[dict[str, Path]]:
    """A copy of a raw frame and of the master bias, damaged and restored."""
    copies = {}
    for name, src in (("frame", fits_world.data / "dark_0.fits"),
                      ("bias", fits_world.master_bias)):  # fmt: skip
        copies[name] = fits_world.root / f"work-{name}.fits"
        shutil.copyfile(src, copies[name])
    yield copies
    for path in copies.values():
        path.unlink(missing_ok=True)


def _read(kind: str, path: Path) -> object:
    if kind == "frame":
        return inspect_frame(path, ReduceMode.DARK)
    return load_master(path, MasterKind.BIAS)


HEADER_BYTES = 2880 * 3
#: One byte changed: the checksums catch any single change (two changes can
#: cancel in a ones'-complement sum: a limit of FITS checksums, not a bug).
FLIP = st.tuples(st.integers(0, HEADER_BYTES - 1), st.integers(1, 255))


@pytest.mark.timeout(600)
@fuzz(60)
@given(kind=st.sampled_from(["frame", "bias"]), flip=FLIP)
def test_a_changed_header_byte_is_refused_in_one_line(
    work_copies: dict[str, Path], kind: str, flip: tuple[int, int]
) -> None:
    path = work_copies[kind]
    with open(path, "r+b") as handle:
        original = handle.read(HEADER_BYTES)
        changed = bytearray(original)
        changed[flip[0]] ^= flip[1]
        handle.seek(0)
        handle.write(changed)
    try:
        with pytest.raises(InputError) as caught:
            _read(kind, path)
        assert "\n" not in str(caught.value)
        assert path.name in str(caught.value)
    finally:
        with open(path, "r+b") as handle:
            handle.write(original)


@pytest.mark.timeout(600)
@fuzz(40)
@given(
    kind=st.sampled_from(["frame", "bias"]),
    fraction=st.floats(0.0, 1.0, exclude_max=True),
)
def test_a_file_cut_anywhere_is_refused_in_one_line(
    fits_world: FitsWorld, work_copies: dict[str, Path], kind: str, fraction: float
) -> None:
    path = work_copies[kind]
    size = path.stat().st_size
    os.truncate(path, int(size * fraction))
    try:
        with pytest.raises(InputError) as caught:
            _read(kind, path)
        assert "\n" not in str(caught.value)
        assert path.name in str(caught.value)
    finally:
        src = (
            fits_world.data / "dark_0.fits"
            if kind == "frame"
            else fits_world.master_bias
        )
        shutil.copyfile(src, path)
