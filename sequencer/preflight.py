"""Checks made before the first exposure, so that no dark time is spent on a
run that must fail.

Everything the run can know before it moves hardware is checked here: each
block's frame count against the reduction's minimum (``[reduce] min_frames``,
the number ``megara-dark reduce --min-frames`` takes), each master bias given
by a block (a valid master bias product), the QC settings, the free space for
every frame and product of the run, and that the data folder takes a file.
Devices are checked by connecting and identifying them (:mod:`sequencer.devices`)
before the cover is commanded. Each refusal is one line naming the block, the
key, the value and what is allowed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from drivers.errors import ConfigError
from reduce.geometry import RAW_SHAPE
from reduce.rawframe import Mode
from sequencer.blocks import ObservingBlock
from sequencer.config import InstrumentConfig

log = logging.getLogger(__name__)

MIB = 1 << 20
#: Bytes of one raw frame on disk (pixels and header, whole FITS blocks).
RAW_FRAME_BYTES = 2 * RAW_SHAPE[0] * RAW_SHAPE[1] + 3 * 2880
#: Bytes of one trimmed float32 plane of the products.
PLANE_BYTES = 4 * 4096 * 4112
#: Planes in a master bias / master dark (image, variance, count, rate, mask).
PRODUCT_PLANES = {Mode.BIAS: 2.5, Mode.DARK: 3.75}
#: Free space kept beyond the estimate: a fraction, and at least this.
MARGIN, MARGIN_MIN_BYTES = 0.10, 256 * MIB


def check_frame_counts(blocks: list[ObservingBlock], min_frames: int) -> None:
    """Refuse a block that asks for fewer frames than the reduction needs."""
    for block in blocks:
        if block.nframes < min_frames:
            raise ConfigError(
                f"{block.source}: key 'nframes': got {block.nframes}; the reduction "
                f"needs at least {min_frames} usable frames ([reduce] min_frames in "
                f"the instrument configuration): ask for {min_frames} or more"
            )


def bytes_needed(
    blocks: list[ObservingBlock], config: InstrumentConfig, remaining: dict[str, int]
) -> int:
    """Disk space the rest of the run takes: raw frames (with retakes),
    products, and the largest block's median scratch file."""
    total, scratch = 0, 0
    for block in blocks:
        frames = remaining.get(block.id, block.nframes)
        if frames <= 0:
            continue
        total += (frames + config.run.retake_limit) * RAW_FRAME_BYTES
        total += int(PRODUCT_PLANES[block.mode] * PLANE_BYTES)
        scratch = max(scratch, block.nframes * PLANE_BYTES)
    total += scratch
    return total + max(int(total * MARGIN), MARGIN_MIN_BYTES)


def check_disk(
    workdir: Path,
    blocks: list[ObservingBlock],
    config: InstrumentConfig,
    remaining: dict[str, int],
) -> None:
    """Refuse a run whose frames and products would not fit on the disk."""
    need = bytes_needed(blocks, config, remaining)
    free = shutil.disk_usage(workdir).free
    if free < need:
        raise ConfigError(
            f"{workdir}: {free / MIB:.0f} MiB free; the run needs about "
            f"{need / MIB:.0f} MiB for its frames and products (with a margin); "
            "free space or choose another --workdir"
        )
    log.info("disk: %.0f MiB free, %.0f MiB needed", free / MIB, need / MIB)


def check_writable(datadir: Path) -> None:
    """Refuse a data folder that does not take a file."""
    probe = datadir / f".write-check.{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink()
    except OSError as err:
        raise ConfigError(
            f"{datadir}: cannot write a file there ({err.strerror or err}); make "
            "the folder writable or choose another --workdir"
        ) from err


def check_reduction_inputs(
    blocks: list[ObservingBlock], config: InstrumentConfig
) -> None:
    """Refuse invalid QC settings or a master bias that is not one."""
    from reduce.errors import ReductionError  # noqa: PLC0415 - heavy
    from reduce.preflight import check_master_bias  # noqa: PLC0415
    from reduce.settings import Options  # noqa: PLC0415

    try:
        Options.from_qc_file(
            config.reduce.qc_config, min_frames=config.reduce.min_frames
        )
    except ReductionError as err:
        raise ConfigError(f"{config.source}: [reduce] qc_config: {err}") from err
    for block in blocks:
        if block.master_bias is None:
            continue
        try:
            check_master_bias(block.master_bias)
        except ReductionError as err:
            raise ConfigError(
                f"{block.source}: key 'requirements.master_bias': {err}"
            ) from err


def check_run(
    workdir: Path,
    blocks: list[ObservingBlock],
    config: InstrumentConfig,
    remaining: dict[str, int],
) -> None:
    """Every check of this module, in order (see the module docstring)."""
    pending = [b for b in blocks if remaining.get(b.id, b.nframes) > 0]
    check_frame_counts(pending, config.reduce.min_frames)
    check_reduction_inputs(pending, config)
    check_writable(workdir / "data")
    check_disk(workdir, pending, config, remaining)
