"""Reduce blocks of raw frames already on disk: ``megara-dark reduce``.

:func:`run_reduction_file` reads a reduction YAML (:mod:`reduce.blocks`) and
runs its blocks in order; :func:`run_block` reduces one block:

1. resolve the frame files and the master bias (named in ``requirements``,
   or the one an earlier bias block of the same file produced);
2. first pass over every frame, in parallel (:func:`reduce.frames.inspect_frame`),
   while the master bias is read;
3. the rest (:func:`reduce.pipeline.reduce_inspected`), combining the frames
   band by band from their raw files (:func:`reduce.engine.combine_files`).

:func:`reduce_block` reduces one block of frame paths (no YAML).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.blocks import ReductionBlock, load_blocks, mode_named
from reduce.checks import require_frames
from reduce.digests import DigestPrefetch
from reduce.documents import utc_now
from reduce.engine import combine_files
from reduce.frames import FrameInspection, inspect_frame
from reduce.io import ProcessingLog
from reduce.masters import Master, MasterKind, load_master
from reduce.pipeline import BlockRun, Clock, Result, reduce_inspected
from reduce.preflight import CheckedMaster, check_blocks, resolve_frames
from reduce.rawframe import Mode
from reduce.settings import Options

log = logging.getLogger(__name__)


def _resolve_bias(
    block: ReductionBlock, datadir: Path, workdir: Path, produced: dict[str, Path]
) -> Path | None:
    if block.mode is Mode.BIAS:
        return None
    if block.master_bias is None:
        return produced.get("master_bias")
    named = Path(block.master_bias)
    if named.is_absolute():
        return named
    for base in (workdir, datadir):
        if os.path.isfile(base / named):  # False, not an error, for any OSError
            return base / named
    return workdir / named


def _inspect_all(
    paths: Sequence[Path],
    mode: Mode,
    bias: Callable[[], npt.NDArray[np.float32] | None],
    options: Options,
    digests: DigestPrefetch | None,
) -> list[FrameInspection]:
    def one(path: Path) -> FrameInspection:
        return inspect_frame(
            path,
            mode,
            bias=bias,
            backend=options.backend,
            digests=digests,
            temperature_keys=options.checks.temperature_keys,
        )

    if options.worker_threads == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(options.worker_threads) as pool:
        return list(pool.map(one, paths))


def _inspect_with_bias(
    paths: Sequence[Path],
    mode: Mode,
    bias_path: Path | None,
    options: Options,
    digests: DigestPrefetch | None,
    checked: Master | None = None,
) -> tuple[list[FrameInspection], Master | None]:
    """The frames' first pass, and the master bias read meanwhile.

    The master bias (two 67 MB images, checksums verified) is read on its
    own thread while the frames are read, checked and hashed; a frame waits
    for it only to measure its bias-subtracted level. ``checked``: the
    master the preflight already read (not read again).
    """
    if checked is not None:
        found = checked
        frames = _inspect_all(paths, mode, lambda: found.data, options, digests)
        return frames, checked
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(
            lambda: (
                load_master(bias_path, MasterKind.BIAS)
                if bias_path is not None
                else None
            )
        )

        def bias_data() -> npt.NDArray[np.float32] | None:
            found = pending.result()
            return found.data if found is not None else None

        try:
            frames = _inspect_all(paths, mode, bias_data, options, digests)
        finally:
            bias = pending.result()  # a bad master bias is the error to report
    return frames, bias


def run_block(
    block: ReductionBlock,
    datadir: Path,
    workdir: Path,
    options: Options,
    produced: dict[str, Path] | None = None,
    digests: DigestPrefetch | None = None,
    checked: Mapping[Path, CheckedMaster] | None = None,
) -> Result:
    """Reduce one block into ``workdir/obsid<ID>_results`` (see module doc).

    Parameters
    ----------
    block
        The block.
    datadir
        Folder of its frames (relative names).
    workdir
        Work folder; also searched for a master bias named relatively.
    options
        How to reduce.
    produced
        Products of the earlier blocks of the same file (a bias block adds
        its master bias, which a later dark block without one uses).
    digests
        SHA-256 of the frames hashed ahead (:mod:`reduce.digests`).
    checked
        Master biases the preflight read (:func:`reduce.preflight.check_blocks`),
        used while their files are unchanged.
    """
    produced = produced if produced is not None else {}
    clock, plog, started = Clock(), ProcessingLog(), utc_now()
    plog.add(f"block {block.id}: mode {block.mode.value}, {len(block.frames)} frames")
    paths = resolve_frames(block, datadir)
    require_frames(len(paths), options.min_frames, block.source, 0)
    bias_path = _resolve_bias(block, datadir, workdir, produced)
    known = (checked or {}).get(bias_path) if bias_path is not None else None
    frames, bias = _inspect_with_bias(
        paths,
        block.mode,
        bias_path,
        options,
        digests,
        known.current() if known is not None else None,
    )
    if bias is not None:
        plog.add(f"master bias {bias.path} (UUID {bias.uuid})")
    run = BlockRun(block, workdir, options, bias, plog, clock, started)
    combine = functools.partial(combine_files, threads=options.worker_threads)
    result = reduce_inspected(run, frames, combine)
    if block.mode is Mode.BIAS:
        produced["master_bias"] = result.product
    return result


def run_reduction_file(
    ob_path: str | Path,
    datadir: str | Path,
    workdir: str | Path,
    options: Options | None = None,
    digests: DigestPrefetch | None = None,
    *,
    overwrite: bool = True,
) -> list[Result]:
    """Reduce every block of a reduction YAML file, in order.

    A dark block that names no master bias uses the one produced by the
    latest bias block before it in the same file. Every block is checked
    before the first product is written (:func:`reduce.preflight.check_blocks`;
    with ``overwrite`` False, existing products are refused).

    Parameters
    ----------
    ob_path
        The reduction blocks (YAML, one document per block).
    datadir
        Folder of the raw frames named in the blocks.
    workdir
        Folder that receives ``obsid<ID>_results/`` per block.
    options
        Reduction settings (defaults when None).
    digests
        SHA-256 of the frames, hashed ahead
        (:func:`reduce.digests.prefetch_reduction_file`).
    """
    opts = options or Options()
    blocks = load_blocks(ob_path)
    work = Path(workdir)
    checked = check_blocks(blocks, Path(datadir), work, opts, overwrite=overwrite)
    # One master kept for the blocks (not read twice); with several, memory
    # would grow by 134 MB each: they are read again, block by block.
    kept = checked if len(checked) == 1 else {}
    work.mkdir(parents=True, exist_ok=True)
    produced: dict[str, Path] = {}
    return [
        run_block(b, Path(datadir), work, opts, produced, digests, kept) for b in blocks
    ]


def reduce_block(
    *,
    block_id: str,
    mode: str,
    frames: Sequence[str | Path],
    master_bias: str | Path | None,
    workdir: str | Path,
    options: Options | None = None,
) -> Result:
    """Reduce one block of frame paths (the online reduction's reference).

    Parameters
    ----------
    block_id
        Block id (products in ``workdir/obsid<block_id>_results``).
    mode
        ``MegaraBiasImage`` or ``MegaraDarkImage``.
    frames
        Raw frame paths (frames marked invalid are excluded, not errors).
    master_bias
        Master bias for a dark block (None: none).
    workdir
        Work folder.
    options
        Reduction settings (defaults when None).
    """
    block = ReductionBlock(
        id=block_id,
        mode=mode_named(mode, block_id),
        frames=tuple(str(Path(f).resolve()) for f in frames),
        master_bias=str(master_bias) if master_bias is not None else None,
        source=f"block {block_id}",
    )
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    return run_block(block, work, work, options or Options())
