"""A block's inspected frames into its products: the step that the batch
reduction (:mod:`reduce.batch`) and the online one (:mod:`reduce.online`)
share, once every frame of the block has been through the first pass
(:func:`reduce.frames.inspect_frame`).

:func:`reduce_inspected`:

1. frame-set checks (:func:`reduce.checks.select_frames`): provenance,
   exposure times, interlock and light-leak exclusions, minimum frame count;
2. combination, band by band (the caller's: from the raw files,
   :func:`reduce.engine.combine_files`, or from the running median); each
   final band goes through the master's steps
   (:class:`reduce.masterband.MasterBand`: bias subtracted, cosmic rays
   counted) into the product file as it is computed
   (:mod:`reduce.productfile`);
3. QC and QA flag (:mod:`reduce.qc`, :func:`reduce.steps.final_report`),
   the DQ mask, the final primary header;
4. ``result.json`` and ``task.json`` (:mod:`reduce.documents`) and
   ``processing.log``, all in ``WORK/obsid<ID>_results/``.

Errors: :class:`~reduce.errors.InputError` for unusable inputs (exit status
2 in the CLI), :class:`~reduce.errors.ReductionError` for the rest.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.blocks import ReductionBlock
from reduce.checks import (
    Excluded,
    Selection,
    block_temperature,
    require_frames,
    select_frames,
    temperature_spread,
)
from reduce.combine import BandSink, CombineConfig, Combined
from reduce.documents import result_document, task_document, write_json
from reduce.frames import FrameInspection
from reduce.hotpixels import FramePixels
from reduce.io import ProcessingLog
from reduce.masterband import MasterBand
from reduce.masters import Master
from reduce.productfile import MasterSink, ProductFile
from reduce.products import (
    ImagePlan,
    master_layout,
    product_header,
    provisional_report,
)
from reduce.qc import HotPixels, QAReport, qc_master
from reduce.rawframe import Mode
from reduce.readback import frame_pixels
from reduce.settings import Options
from reduce.steps import combine_config, cosmic_ray_model, final_report

log = logging.getLogger(__name__)

Combine = Callable[[Sequence[FrameInspection], CombineConfig, BandSink], Combined]
"""``combine(used, config, sink)``: combine the frames used, giving each final
band to the sink; returns the whole combination, as the sink left it (the
master bias subtracted)."""


@dataclass(frozen=True)
class Result:
    """What one block produced.

    Attributes
    ----------
    block_id, mode
        The block.
    folder
        ``WORK/obsid<ID>_results``.
    product
        The master FITS file.
    qa
        QA flag, ``GOOD`` / ``PARTIAL`` / ``BAD``.
    reasons
        Why the flag is not GOOD.
    n_used
        Frames combined.
    excluded
        Frames left out, with the reason.
    seconds
        Wall time of the block's reduction, s.
    """

    block_id: str
    mode: Mode
    folder: Path
    product: Path
    qa: str
    reasons: tuple[str, ...]
    n_used: int
    excluded: tuple[Excluded, ...]
    seconds: float


@dataclass
class Clock:
    """Step timings of a block's reduction (task.json's ``timings_s``)."""

    start: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)
    last: float = 0.0

    def mark(self, name: str) -> None:
        """Record the seconds since the previous mark as step ``name``."""
        now = time.perf_counter() - self.start
        self.marks[name] = round(now - self.last, 4)
        self.last = now


@dataclass(frozen=True)
class BlockRun:
    """One block's reduction under way: what it was asked, what it records.

    Attributes
    ----------
    block
        The block (its id, mode and source name the products and messages).
    workdir
        Work folder (products in ``workdir/obsid<ID>_results``).
    options
        How to reduce.
    bias
        The master bias read for a dark block (None: none).
    plog
        The processing log so far.
    clock
        Step timings.
    started
        When the reduction started, UTC ISO 8601.
    """

    block: ReductionBlock
    workdir: Path
    options: Options
    bias: Master | None
    plog: ProcessingLog
    clock: Clock
    started: str

    @property
    def dark(self) -> bool:
        """Whether the block makes a master dark."""
        return self.block.mode is Mode.DARK


def reduce_inspected(
    run: BlockRun, frames: Sequence[FrameInspection], combine: Combine
) -> Result:
    """Checks, combination, QC and products of a block's inspected frames.

    Parameters
    ----------
    run
        The block's reduction so far.
    frames
        Every frame of the block, inspected, in the block's order.
    combine
        Combines the frames used (see :data:`Combine`).

    Raises
    ------
    InputError
        The frames cannot be combined (mixed provenance or exposure times,
        too few usable frames).
    """
    for f in frames:
        run.plog.add(
            f"inspected {f.name}: EXPTIME {f.exptime:g} s, checksum {f.checksum}, "
            f"overscan {f.overscan[0].level:.2f}/{f.overscan[1].level:.2f} ADU"
        )
    run.clock.mark("inspect_s")
    source, options = run.block.source, run.options
    chosen = select_frames(frames, run.dark, options.checks, source)
    for e in chosen.excluded:
        run.plog.add(f"excluded {e.reason}")
    require_frames(len(chosen.used), options.min_frames, source, len(chosen.excluded))
    folder = run.workdir / f"obsid{run.block.id}_results"
    folder.mkdir(parents=True, exist_ok=True)
    product = folder / f"{run.block.mode.product}.fits"
    product_uuid = str(uuid.uuid1())
    report = _write_master(run, chosen, product, product_uuid, combine)
    _write_documents(run, frames, chosen, product, product_uuid, report)
    return Result(
        block_id=run.block.id,
        mode=run.block.mode,
        folder=folder,
        product=product,
        qa=report.flag.value,
        reasons=report.reasons,
        n_used=len(chosen.used),
        excluded=chosen.excluded,
        seconds=run.clock.last,
    )


def _layout(
    run: BlockRun, chosen: Selection, product_uuid: str, qa: QAReport
) -> list[ImagePlan | bytes]:
    """The master's HDUs before its pixels, its primary header saying ``qa``."""
    header = product_header(
        chosen.used[0].header,
        run.block.mode,
        product_uuid=product_uuid,
        frame_uuids=[str(f.header.get("UUID", f.name)) for f in chosen.used],
        bias_uuid=run.bias.uuid if run.bias is not None else None,
        method=run.options.method,
        qa=qa,
        excluded=len(chosen.excluded),
    )
    return master_layout(header, run.dark, chosen.darktime if run.dark else None)


def _write_master(
    run: BlockRun,
    chosen: Selection,
    product: Path,
    product_uuid: str,
    combine: Combine,
) -> QAReport:
    """Combine, measure and write the master; its final QA report.

    The product is written while it is computed (:mod:`reduce.productfile`):
    every band of the combination goes to disk as soon as it is final, and
    the primary header, which carries the QC, last.
    """
    options, used = run.options, chosen.used
    config = combine_config(options.method, options.rows_per_band(len(used)), used)
    provisional = provisional_report(len(used), run.dark, options.thresholds)
    out = ProductFile(product, _layout(run, chosen, product_uuid, provisional))
    try:
        band = MasterBand(
            MasterSink(out, chosen.darktime if run.dark else None),
            run.bias.data if run.bias is not None else None,
            run.bias.variance if run.bias is not None else None,
            cosmic_ray_model(used, config),
        )
        combined = combine(used, config, band)  # bias subtracted by the band
        run.plog.add(
            f"combined {len(used)} frames ({options.method}), "
            f"threads {options.worker_threads}"
        )
        run.clock.mark("combine_s")
        report, hot = _assess(run, chosen, combined, band.cosmic_ray_pixels)
        if run.dark:
            out.write_image("DQ", hot.mask)
        primary = _layout(run, chosen, product_uuid, report)[0]
        if not isinstance(primary, ImagePlan):  # master_layout's first is one
            raise TypeError("a master's first HDU must be its primary image")
        grown = out.finish(primary.header)
        if grown:  # many QA reasons
            run.plog.add(
                f"primary header outgrew its room by {grown} bytes; data moved"
            )
    finally:
        out.abort()  # no-op once finished
    return report


def _assess(
    run: BlockRun,
    chosen: Selection,
    combined: Combined,
    cosmic_ray_pixels: tuple[int, ...] | None,
) -> tuple[QAReport, HotPixels]:
    """QC of the master, the block's own QA reasons, and the DQ mask."""
    models = [m for f in chosen.used for m in f.overscan]
    report, hot = qc_master(
        combined.data,
        models,
        len(chosen.used),
        chosen.darktime if run.dark else None,
        run.options.thresholds,
        combined.npix,
        cosmic_ray_pixels,
        block_temperature(chosen.used),
        _frame_values(chosen.used, run.bias.data if run.bias is not None else None),
        temperature_spread(chosen.used),
    )
    report = final_report(report, chosen.excluded, run.dark, run.bias is not None)
    run.plog.add(f"QA {report.flag.value}" + "".join(f"; {r}" for r in report.reasons))
    run.clock.mark("qc_s")
    return report, hot


def _frame_values(
    used: Sequence[FrameInspection], bias: npt.NDArray[np.float32] | None
) -> FramePixels:
    """The used frames' values at pixels, as the master saw them (bias off)."""

    def values(
        rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp]
    ) -> npt.NDArray[np.float32]:
        found = frame_pixels(used, rows, cols)
        if bias is not None:
            found -= bias[rows, cols]
        return found

    return values


def _write_documents(
    run: BlockRun,
    frames: Sequence[FrameInspection],
    chosen: Selection,
    product: Path,
    product_uuid: str,
    report: QAReport,
) -> None:
    """result.json, task.json and processing.log beside the master."""
    run.plog.add(f"wrote {product.name} (UUID {product_uuid})")
    run.clock.mark("write_s")
    folder = product.parent
    excluded = [(e.name, e.reason) for e in chosen.excluded]
    write_json(
        folder / "result.json",
        result_document(run.block.mode.product, product.name, report, excluded),
    )
    task = task_document(
        run.block,
        run.options,
        started=run.started,
        product=product,
        product_uuid=product_uuid,
        frames=frames,
        chosen=chosen,
        bias=run.bias,
        report=report,
    )
    run.clock.mark("json_s")
    task["timings_s"] = {**run.clock.marks, "total_s": round(run.clock.last, 4)}
    write_json(folder / "task.json", task)
    run.plog.add(f"done in {run.clock.last:.3f} s")
    run.plog.write(folder / "processing.log")
