"""What the reduction can check before any frame exists.

A run calls these before its first exposure (``sequencer.preflight``), so
that a master bias that is not one, or QC settings that do not load, are
refused before dark time is spent, with the same messages that
``megara-dark reduce`` gives for them later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reduce.blocks import ReductionBlock
from reduce.checks import require_frames
from reduce.errors import InputError
from reduce.files import Identity, check_regular, identity
from reduce.masters import Master, MasterKind, load_master
from reduce.rawframe import Mode
from reduce.settings import Options


def check_master_bias(path: Path) -> Master:
    """Read and validate the master bias a dark block names.

    Raises
    ------
    InputError
        It is not a readable, finite master bias of the trimmed shape.
    """
    return load_master(path, MasterKind.BIAS)


@dataclass(frozen=True)
class CheckedMaster:
    """A master bias the preflight read, and the file's identity then.

    The reduction uses it instead of reading the file again while the file
    is still that one (a bias block of the same file may have replaced it).
    """

    master: Master
    identity: Identity

    def current(self) -> Master | None:
        """The master, if its file has not changed since; else None."""
        try:
            now = identity(os.stat(self.master.path))
        except OSError:
            return None
        return self.master if now == self.identity else None


def _checked_master_bias(path: Path) -> CheckedMaster:
    master = check_master_bias(path)  # refuses a FIFO, a link loop, ... by name
    return CheckedMaster(master, identity(os.stat(path)))


def resolve_frames(block: ReductionBlock, datadir: Path) -> list[Path]:
    """The block's frame files, each checked to be a regular file (a FIFO, a
    device, a directory, a link loop or a missing file is refused by name).

    A relative name is relative to ``datadir``.
    """
    paths = []
    for name in block.frames:
        path = Path(name) if Path(name).is_absolute() else datadir / name
        try:
            check_regular(path, "frame file")
        except InputError as err:
            raise InputError(
                err.source, f"{err.detail} (listed in {block.source})"
            ) from None
        paths.append(path)
    return paths


#: The files of a block's products: any of them present means "reduced".
PRODUCT_FILES = ("master_bias.fits", "master_dark.fits", "result.json", "task.json")


def check_blocks(
    blocks: Sequence[ReductionBlock],
    datadir: Path,
    workdir: Path,
    options: Options,
    *,
    overwrite: bool,
) -> dict[Path, CheckedMaster]:
    """Refuse a reduction file before any of its products is written.

    Every block is checked: its frames exist, are regular files and are
    distinct files (one frame under two spellings is one frame), there are
    at least ``options.min_frames`` of them, a master bias it names (that no
    earlier block of the file makes) is a valid one, and, unless
    ``overwrite``, it has no products yet.

    Returns
    -------
    dict
        The master biases read, by the path the blocks name them at.

    Raises
    ------
    InputError
        The first block that cannot be reduced, with the reason.
    """
    made_bias = False
    masters: dict[Path, CheckedMaster] = {}
    for block in blocks:
        paths = resolve_frames(block, datadir)
        _refuse_duplicates(paths, block.source)
        require_frames(len(paths), options.min_frames, block.source, 0)
        if block.mode is Mode.DARK and block.master_bias is not None:
            bias = _named_bias(block.master_bias, datadir, workdir)
            if bias is not None and bias not in masters:
                masters[bias] = _checked_master_bias(bias)
            elif not made_bias:  # no earlier block of the file makes it
                raise InputError(
                    block.source,
                    f"master bias {block.master_bias} not found in {workdir} or "
                    f"{datadir}; name an existing master bias",
                )
        made_bias = made_bias or block.mode is Mode.BIAS
        folder = workdir / f"obsid{block.id}_results"
        present = [n for n in PRODUCT_FILES if os.path.lexists(folder / n)]
        if present and not overwrite:
            raise InputError(
                block.source,
                f"{folder} already holds products ({', '.join(present)}); "
                "give --overwrite to replace them, or another --workdir",
            )
    return masters


def _named_bias(name: str, datadir: Path, workdir: Path) -> Path | None:
    """The master bias a block names, where the reduction looks for it."""
    named = Path(name)
    if named.is_absolute():
        return named
    # lexists: a link loop or a FIFO is found (and refused by the master-bias
    # check, by name); a name too long is False, not an OSError.
    found = (b / named for b in (workdir, datadir) if os.path.lexists(b / named))
    return next(found, None)


def _refuse_duplicates(paths: Sequence[Path], source: str) -> None:
    seen: dict[tuple[int, int], Path] = {}
    for path in paths:
        info = path.stat()
        key = (info.st_dev, info.st_ino)
        if key in seen:
            raise InputError(
                source,
                f"{path} and {seen[key]} are the same file; a frame is listed "
                "once in a block",
            )
        seen[key] = path
