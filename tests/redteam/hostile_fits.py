"""Category A: hostile FITS into ``megara-dark reduce``, built from real frames.

A :class:`FitsWorld` holds three bias and three dark raw frames written as
the tests of ``megara-dark reduce`` write them, and a valid reduction of them
(``ref/obsidb1_results/master_bias.fits``, ``ref/obsidd1_results/...``).
Each :class:`Mutation` makes one hostile file from a real one (a raw frame,
or the master bias): truncated, a byte flipped, a structural header card
changed, no END card, NaN or infinite values under valid checksums, the
wrong product, or something that is not a file at all (a FIFO, ``/dev/zero``,
a directory, symbolic-link trouble, a 5,000-character path).

Each mutation is tried as a frame of the dark block and as its master bias,
in two work folders: a fresh one (no product may be written) and the
reference one with ``--overwrite`` (the products already there must not
change). A few run as real processes, so that a hang is killed and fails.
Each frame mutation is also given to ``sequencer.rawfits.verify_raw_frame``
(the check a resume makes of a frame on disk), in a process of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.redteam.cases import (
    Case,
    changes,
    fifos_opened,
    files_under,
    judge,
    run_command,
    run_in_process,
    run_process,
    scratch,
)
from tests.redteam.paths import PLACES

CATEGORY = "A: hostile FITS into reduce"
CARD, BLOCK = 80, 2880


@dataclass(frozen=True)
class FitsWorld:
    """Real raw frames (``data``) and a valid reduction of them (``ref``)."""

    root: Path
    data: Path
    ref: Path

    @property
    def master_bias(self) -> Path:
        return self.ref / "obsidb1_results" / "master_bias.fits"

    @property
    def master_dark(self) -> Path:
        return self.ref / "obsidd1_results" / "master_dark.fits"


def _header(exptime: float, obsmode: str, k: int) -> dict[str, Any]:
    from reduce.synthetic import raw_header  # noqa: PLC0415

    header = raw_header(exptime, obsmode=obsmode)
    header.update(
        {
            "DATE-OBS": "2026-11-28T01:00:00.0",
            "INSCONF": "4fd05b24-2ed9-457b-b563-a3c618bb1d4c",
            "VPH": "LR-U",
            "INSMODE": "MOS",
            "UUID": str(uuid.UUID(int=k + (1 << 64))),
        }
    )
    return header


def build_fits_world(root: Path) -> FitsWorld:
    """Write 3 bias and 3 dark frames and reduce them (about 10 s, 0.7 GB)."""
    from reduce.batch import run_reduction_file  # noqa: PLC0415
    from reduce.synthetic import (  # noqa: PLC0415
        SyntheticDetector,
        make_raw,
        write_raw,
    )

    data, ref = root / "raw", root / "ref"
    data.mkdir(parents=True)
    truth, rng = SyntheticDetector(), np.random.default_rng(20261206)
    for k in range(3):
        bias = _header(0.0, "MegaraBiasImage", k)
        write_raw(data / f"bias_{k}.fits", make_raw(truth, 0.0, rng), bias)
        dark = _header(3600.0, "MegaraDarkImage", 10 + k)
        write_raw(data / f"dark_{k}.fits", make_raw(truth, 3600.0, rng), dark)
    docs = [
        _doc("b1", "MegaraBiasImage", [f"bias_{k}.fits" for k in range(3)]),
        _doc("d1", "MegaraDarkImage", [f"dark_{k}.fits" for k in range(3)]),
    ]
    ob = root / "ref.yaml"
    ob.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    run_reduction_file(ob, data, ref)
    return FitsWorld(root, data, ref)


def _doc(bid: str, mode: str, frames: list[str], bias: str | None = None) -> Any:
    doc: dict[str, Any] = {"id": bid, "instrument": "MEGARA", "mode": mode}
    doc["frames"] = frames
    if bias is not None:
        doc["requirements"] = {"master_bias": bias}
    return doc


# --- making hostile files ---------------------------------------------------------

Make = Callable[[FitsWorld, Path, Path], Path]
"""``make(world, real_file, folder)``: the hostile path to name in the block."""


def _copy(src: Path, folder: Path) -> Path:
    dest = folder / "hostile.fits"
    shutil.copyfile(src, dest)
    return dest


def truncated_by(nbytes: int) -> Make:
    def make(world: FitsWorld, src: Path, folder: Path) -> Path:
        dest = _copy(src, folder)
        os.truncate(dest, dest.stat().st_size - nbytes)
        return dest

    return make


def cut_to(fraction: float) -> Make:
    def make(world: FitsWorld, src: Path, folder: Path) -> Path:
        dest = _copy(src, folder)
        os.truncate(dest, int(dest.stat().st_size * fraction))
        return dest

    return make


def _cards(path: Path) -> tuple[bytes, int]:
    """The primary header's bytes (to its END card) and its padded length."""
    with open(path, "rb") as handle:
        head = handle.read(BLOCK * 10)
    for pos in range(0, len(head), CARD):
        if head[pos : pos + 8] == b"END     ":
            return head[: pos + CARD], -(-(pos + CARD) // BLOCK) * BLOCK
    raise AssertionError(f"{path}: no END card in its first 10 blocks")


def _offset(path: Path, key: str) -> int:
    cards, _ = _cards(path)
    for pos in range(0, len(cards), CARD):
        if cards[pos : pos + 8] == key.encode().ljust(8):
            return pos
    raise AssertionError(f"{path}: no card {key}")


def _patch(dest: Path, offset: int, data: bytes) -> None:
    with open(dest, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def card(key: str, value: str) -> Make:
    """The card ``key`` rewritten as ``KEY = value`` (checksums left stale)."""

    def make(world: FitsWorld, src: Path, folder: Path) -> Path:
        dest = _copy(src, folder)
        text = f"{key:<8}= {value:>20}".ljust(CARD)[:CARD]
        _patch(dest, _offset(dest, key), text.encode("ascii"))
        return dest

    return make


def flipped(key: str = "", column: int = 0) -> Make:
    """One bit flipped in card ``key`` at ``column`` (no key: a third into
    the data)."""

    def make(world: FitsWorld, src: Path, folder: Path) -> Path:
        dest = _copy(src, folder)
        if key:
            offset = _offset(dest, key) + column
        else:
            offset = _cards(dest)[1] + (dest.stat().st_size - _cards(dest)[1]) // 3
        with open(dest, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)[0]
        _patch(dest, offset, bytes([byte ^ 0x01]))
        return dest

    return make


def without_end(world: FitsWorld, src: Path, folder: Path) -> Path:
    dest = _copy(src, folder)
    _patch(dest, _offset(dest, "END"), b" " * CARD)
    return dest


def empty(world: FitsWorld, src: Path, folder: Path) -> Path:
    dest = folder / "hostile.fits"
    dest.write_bytes(b"")
    return dest


def text_file(world: FitsWorld, src: Path, folder: Path) -> Path:
    dest = folder / "hostile.fits"
    dest.write_text("id: not a FITS file\n")
    return dest


def placed(kind: str) -> Make:
    """``hostile.fits`` made a FIFO, a directory, a link loop... (paths.PLACES)."""
    place, _ = PLACES[kind]
    return lambda world, src, folder: place(folder, "hostile.fits", b"")


def other(pick: Callable[[FitsWorld], Path]) -> Make:
    """A real file of another kind (a raw frame as master, a master as frame)."""
    return lambda world, src, folder: pick(world)


def master_with(edit: Callable[[Any], None]) -> Make:
    """A copy of the file with its images edited and its checksums made valid."""

    def make(world: FitsWorld, src: Path, folder: Path) -> Path:
        from astropy.io import fits  # noqa: PLC0415

        dest = folder / "hostile.fits"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(src, memmap=False) as hdul:
                edit(hdul)
                hdul.writeto(dest, checksum=True)
        return dest

    return make


def _all_nan(hdul: Any) -> None:
    hdul[0].data = np.full_like(hdul[0].data, np.nan)


def _one_inf(hdul: Any) -> None:
    hdul[0].data[2000, 3000] = np.inf


def _nan_variance(hdul: Any) -> None:
    hdul["VARIANCE"].data[10, 10] = np.nan


# --- the table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """One way to make a hostile file; ``words``: what the refusal must say."""

    name: str
    make: Make
    words: tuple[str, ...]
    roles: tuple[str, ...] = ("frame", "bias")
    subprocess: bool = False


TRUNCATED = ("truncated", "short")
MUTATIONS: tuple[Mutation, ...] = (
    *(Mutation(f"truncated-{n}", truncated_by(n), TRUNCATED) for n in (1, 2, 3)),
    Mutation("truncated-1-subprocess", truncated_by(1), TRUNCATED, subprocess=True),
    Mutation("truncated-block", truncated_by(BLOCK), TRUNCATED),
    Mutation("truncated-half", cut_to(0.5), TRUNCATED),
    Mutation("zero-bytes", empty, ("empty",)),
    Mutation("flipped-header-byte", flipped("EXPTIME", 28), ("CHECKSUM",)),
    Mutation("flipped-data-byte", flipped(), ("DATASUM",)),
    # REDUCER says whose product it is (numina's are not checksum-verified).
    *(
        Mutation(
            f"flipped-reducer-{n}", flipped("REDUCER", n), ("CHECKSUM",), ("bias",)
        )
        for n in (0, 12)
    ),
    Mutation("naxis1-negative", card("NAXIS1", "-4196"), ("NAXIS1",)),
    Mutation(
        "naxis1-negative-subprocess",
        card("NAXIS1", "-4096"),
        ("NAXIS1",),
        subprocess=True,
    ),
    Mutation("naxis1-zero", card("NAXIS1", "0"), ("NAXIS1", "shape")),
    Mutation("naxis1-huge", card("NAXIS1", "1000000000000"), ("NAXIS1", "short")),
    Mutation("naxis1-1e12", card("NAXIS1", "1E12"), ("NAXIS1",)),
    Mutation("naxis1-fraction", card("NAXIS1", "4196.5"), ("NAXIS1",)),
    Mutation("naxis1-text", card("NAXIS1", "'many'"), ("NAXIS1",)),
    Mutation("naxis1-garbage", card("NAXIS1", "#@!"), ("NAXIS1", "header")),
    *(
        Mutation(f"bitpix-{v}", card("BITPIX", v), ("BITPIX",))
        for v in ("7", "0", "12", "-16", "1099511627776", "'X'")
    ),
    Mutation("naxis-1000", card("NAXIS", "1000"), ("NAXIS",)),
    Mutation("naxis-negative", card("NAXIS", "-2"), ("NAXIS",)),
    Mutation("no-end-card", without_end, ("END",)),
    Mutation("not-fits", text_file, ("not a FITS",)),
    Mutation("symlink-loop", placed("symlink-loop"), ("loop",)),
    Mutation(
        "symlink-loop-subprocess", placed("symlink-loop"), ("loop",), subprocess=True
    ),
    Mutation("dangling-symlink", placed("dangling-symlink"), ("not found",)),
    Mutation("directory", placed("directory"), ("directory",)),
    Mutation("fifo", placed("fifo"), ("FIFO",)),
    Mutation("fifo-subprocess", placed("fifo"), ("FIFO",), subprocess=True),
    Mutation("dev-zero", placed("dev-zero"), ("device",), subprocess=True),
    Mutation("path-5000-characters", placed("path-5000-characters"), ("too long",)),
    Mutation("all-nan", master_with(_all_nan), ("non-finite",), ("bias",)),
    Mutation("one-inf", master_with(_one_inf), ("non-finite",), ("bias",)),
    Mutation("nan-in-variance", master_with(_nan_variance), ("VARIANCE",), ("bias",)),
    Mutation("nan-subprocess", master_with(_all_nan), ("non-finite",), ("bias",), True),
    Mutation(
        "raw-frame", other(lambda w: w.data / "bias_0.fits"), ("BITPIX",), ("bias",)
    ),
    Mutation("master-dark", other(lambda w: w.master_dark), ("MasterDark",), ("bias",)),
    Mutation("master-bias", other(lambda w: w.master_bias), ("raw frame",), ("frame",)),
)


def _source(world: FitsWorld, role: str) -> Path:
    return world.data / "dark_2.fits" if role == "frame" else world.master_bias


def _named(target: Path) -> str:
    """What the one stderr line must hold to name ``target``."""
    return str(target) if len(str(target)) < 200 else target.name


def _check(world: FitsWorld, mutation: Mutation, role: str, over: bool) -> list[str]:
    with scratch(world.root / "cases", "case") as folder:
        target = mutation.make(world, _source(world, role), folder)
        frames = [str(world.data / f"dark_{k}.fits") for k in range(3)]
        bias = str(world.master_bias)
        if role == "frame":
            frames[2] = str(target)
        else:
            bias = str(target)
        ob = folder / "ob.yaml"
        doc = _doc("d1", "MegaraDarkImage", frames, bias)
        ob.write_text(yaml.safe_dump(doc, width=10**6), encoding="utf-8")
        work = world.ref if over else folder / "work"
        args = ["reduce", str(ob), "--datadir", str(world.data), "--workdir", str(work)]
        args += ["--overwrite"] if over else []
        before = files_under(work)
        outcome = run_command(args) if mutation.subprocess else run_in_process(args)
        problems = judge(outcome, names=[_named(target)], words=mutation.words)
        problems += changes(before, files_under(work))
        problems += fifos_opened(folder)
    return problems


#: ``sequencer.rawfits.verify_raw_frame`` on one file, as the resume calls it:
#: a ConfigError is one line on stderr and exit status 2.
VERIFY_SCRIPT = """
import sys
from drivers.errors import ConfigError
from sequencer.rawfits import verify_raw_frame
try:
    verify_raw_frame(sys.argv[1])
except ConfigError as err:
    print(f"verify_raw_frame: {err}", file=sys.stderr)
    raise SystemExit(2)
"""


def _check_rawfits(world: FitsWorld, mutation: Mutation) -> list[str]:
    with scratch(world.root / "cases", "rawfits") as folder:
        target = mutation.make(world, _source(world, "frame"), folder)
        outcome = run_process([sys.executable, "-c", VERIFY_SCRIPT, str(target)])
        problems = judge(outcome, names=[_named(target)], words=mutation.words)
        problems += fifos_opened(folder)
    return problems


def fits_cases() -> list[Case]:
    """Every mutation in every role it applies to, in both work folders."""
    found = []
    for mutation in MUTATIONS:
        for role in mutation.roles:
            for over in (False, True):
                where = "over-products" if over else "fresh"

                def check(world: Any, m: Mutation = mutation, r: str = role, o: bool = over) -> list[str]:  # fmt: skip
                    return _check(world, m, r, o)

                found.append(Case(CATEGORY, f"{role}:{mutation.name}:{where}", check))
        if "frame" in mutation.roles and not mutation.name.endswith("-subprocess"):

            def verify(world: Any, m: Mutation = mutation) -> list[str]:
                return _check_rawfits(world, m)

            found.append(Case(CATEGORY, f"rawfits:{mutation.name}", verify))
    return found
