"""Reduce blocks of raw frames into products: the function the CLI and the
sequencer share.

:func:`run_reduction_file` reads a reduction YAML (:mod:`reduce.blocks`) and
runs its blocks in order; :func:`run_block` reduces one block:

1. resolve the frame files and the master bias (named in ``requirements``,
   or the one an earlier bias block of the same file produced);
2. first pass over every frame, in parallel (:func:`reduce.frames.inspect_frame`);
3. frame-set checks (:mod:`reduce.checks`): provenance, exposure times,
   interlock and light-leak exclusions, minimum frame count;
4. second pass: banded, threaded combination (:mod:`reduce.engine`), minus
   the master bias;
5. QC and QA flag (:mod:`reduce.qc`), then the products
   (:mod:`reduce.products`) in ``WORK/obsid<ID>_results/``.

Errors: :class:`~reduce.errors.InputError` for unusable inputs (exit status
2 in the CLI), :class:`~reduce.errors.ReductionError` for the rest.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from reduce.blocks import Mode, ReductionBlock, load_blocks
from reduce.checks import (
    Excluded,
    FrameCheckConfig,
    check_exposure_times,
    check_provenance,
    find_exclusions,
    frame_rate,
    require_frames,
)
from reduce.combine import (
    NETWORK_MAX_N,
    BandSink,
    CombineConfig,
    Combined,
    NoiseModel,
)
from reduce.digests import DigestPrefetch
from reduce.engine import (
    BandCombiner,
    BandSource,
    RawBands,
    default_threads,
    subtract_model,
    to_counts,
)
from reduce.errors import ConfigError, InputError
from reduce.files import check_regular
from reduce.fitsheader import Header
from reduce.frames import FrameInspection, inspect_frame
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, TRIMMED_SHAPE
from reduce.io import ProcessingLog
from reduce.masters import Master, MasterKind, load_master
from reduce.overscan import OverscanModel
from reduce.productfile import MasterSink, ProductFile
from reduce.products import (
    ImagePlan,
    master_layout,
    product_header,
    provisional_report,
    result_document,
    software_versions,
    write_json,
)
from reduce.qc import QAFlag, QAReport, QCThresholds, qc_master
from reduce.window import MedianWindow

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to reduce.

    Attributes
    ----------
    method
        ``median`` (megaradrp's) or ``noise_clip``.
    min_frames
        Fewer usable frames than this is an error.
    exact
        FITPACK overscan spline (scipy's, as megaradrp): bit-identical to
        megaradrp; needs scipy, whose import costs a few tenths of a second.
    thresholds
        QC detection settings and QA limits.
    checks
        Exposure-time and light-leak check settings.
    threads
        Worker threads (None: one per CPU, at most 8).
    band_rows
        Rows combined at a time.
    """

    method: Literal["median", "noise_clip"] = "median"
    min_frames: int = 3
    exact: bool = False
    thresholds: QCThresholds = field(default_factory=QCThresholds)
    checks: FrameCheckConfig = field(default_factory=FrameCheckConfig)
    threads: int | None = None
    band_rows: int = 16

    def __post_init__(self) -> None:
        if self.min_frames < 1:
            raise ConfigError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")


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


MasterBias = Master
"""A master bias read back for a dark block (:class:`reduce.masters.Master`)."""


def read_master_bias(path: Path) -> Master:
    """Read and validate a master bias (:func:`reduce.masters.load_master`)."""
    return load_master(path, MasterKind.BIAS)


def resolve_frames(block: ReductionBlock, datadir: Path) -> list[Path]:
    """The block's frame files, each checked to be a regular file (a FIFO, a
    device, a directory, a link loop or a missing file is refused by name)."""
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
    bias: Callable[[], Float32Array | None],
    options: Options,
    threads: int,
    digests: DigestPrefetch | None = None,
) -> list[FrameInspection]:
    backend: Literal["numpy", "fitpack"] = "fitpack" if options.exact else "numpy"

    def one(path: Path) -> FrameInspection:
        return inspect_frame(path, mode, bias=bias, backend=backend, digests=digests)

    if threads == 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, paths))


def _raw_bands(used: Sequence[FrameInspection]) -> BandSource:
    paths = [f.path for f in used]
    offsets = [f.data_offset for f in used]
    return RawBands(paths, [f.overscan for f in used], offsets)


def _noise_model(frames: Sequence[FrameInspection]) -> NoiseModel:
    rn = tuple(
        float(np.median([f.overscan[k].residual_rms for f in frames]))
        for k in range(len(AMPLIFIERS))
    )
    return NoiseModel(read_noise_adu=(rn[0], rn[1]))


def _typical_signal(frames: Sequence[FrameInspection]) -> tuple[float, float]:
    """Per amplifier, the frames' median sampled signal, ADU (>= 0)."""
    return (
        max(0.0, float(np.median([f.sample_level[0] for f in frames]))),
        max(0.0, float(np.median([f.sample_level[1] for f in frames]))),
    )


def _with_reasons(report: QAReport, extra: Sequence[str]) -> QAReport:
    if not extra:
        return report
    flag = report.flag if report.flag is QAFlag.BAD else QAFlag.PARTIAL
    return dataclasses.replace(report, flag=flag, reasons=(*report.reasons, *extra))


def _qc_document(
    report: QAReport, used: Sequence[FrameInspection], dark: bool
) -> dict[str, Any]:
    def fig(value: float | int | None, unit: str) -> dict[str, Any]:
        ok = value is None or (isinstance(value, int) or math.isfinite(value))
        return {"value": value if ok else None, "unit": unit}

    amps = []
    for a in report.amplifiers:
        amps.append(
            {
                "amplifier": a.amplifier,
                "dark_current": fig(a.dark_current_e_pix_h, "e-/pix/h"),
                "read_noise": fig(a.read_noise_e, "e-"),
                "overscan_level": fig(a.overscan.level, "ADU"),
                "overscan_drift": fig(a.overscan.drift, "ADU"),
                "overscan_slope": fig(a.overscan.slope, "ADU"),
                "hot_pixels": fig(a.hot_pixels, "pixels"),
                "hot_columns": fig(a.hot_columns, "columns"),
                "cosmic_ray_pixels": fig(a.cosmic_ray_pixels, "pixels"),
            }
        )
    doc: dict[str, Any] = {
        "amplifiers": amps,
        "n_frames": fig(report.n_frames, "frames"),
        "flagged_fraction": fig(report.flagged_fraction, "fraction of pixels"),
    }
    if dark:
        doc["frame_dark_rate"] = {
            "unit": "e-/pix/s",
            "values": {f.name: frame_rate(f) for f in used},
        }
    return doc


@dataclass
class _Clock:
    start: float = field(default_factory=time.perf_counter)
    marks: dict[str, float] = field(default_factory=dict)
    last: float = 0.0

    def mark(self, name: str) -> None:
        now = time.perf_counter() - self.start
        self.marks[name] = round(now - self.last, 4)
        self.last = now


def run_block(
    block: ReductionBlock,
    datadir: Path,
    workdir: Path,
    options: Options,
    produced: dict[str, Path] | None = None,
    digests: DigestPrefetch | None = None,
) -> Result:
    """Reduce one block into ``workdir/obsid<ID>_results`` (see module doc).

    ``digests``: SHA-256 of the frames hashed ahead (:mod:`reduce.digests`).
    """
    produced = produced if produced is not None else {}
    clock, plog = _Clock(), ProcessingLog()
    started = datetime.datetime.now(datetime.UTC).isoformat()
    threads = options.threads or default_threads()
    plog.add(f"block {block.id}: mode {block.mode.value}, {len(block.frames)} frames")
    paths = resolve_frames(block, datadir)
    require_frames(len(paths), options.min_frames, block.source, 0)
    bias_path = _resolve_bias(block, datadir, workdir, produced)
    # The master bias (two 67 MB images, checksums verified) is read on its
    # own thread while the frames are read, checked and hashed; a frame
    # waits for it only to measure its bias-subtracted level.
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(
            lambda: read_master_bias(bias_path) if bias_path is not None else None
        )

        def bias_data() -> Float32Array | None:
            found = pending.result()
            return found.data if found is not None else None

        try:
            frames = _inspect_all(
                paths, block.mode, bias_data, options, threads, digests
            )
        finally:
            bias = pending.result()  # a bad master bias is the error to report
    if bias is not None:
        plog.add(f"master bias {bias.path} (UUID {bias.uuid})")
    return _reduce_inspected(
        block, workdir, options, frames, bias, produced, clock, plog, started
    )


def _reduce_inspected(
    block: ReductionBlock,
    workdir: Path,
    options: Options,
    frames: Sequence[FrameInspection],
    bias: MasterBias | None,
    produced: dict[str, Path],
    clock: _Clock,
    plog: ProcessingLog,
    started: str,
    combine: Callable[[Sequence[FrameInspection], CombineConfig, BandSink], Combined]
    | None = None,
) -> Result:
    """Checks, combination, QC and products of inspected frames.

    ``combine`` combines the frames used, giving each final band to the sink
    (default: band by band from their raw files,
    :class:`~reduce.engine.RawBands`).
    """
    threads = options.threads or default_threads()
    for f in frames:
        plog.add(
            f"inspected {f.name}: EXPTIME {f.exptime:g} s, checksum {f.checksum}, "
            f"overscan {f.overscan[0].level:.2f}/{f.overscan[1].level:.2f} ADU"
        )
    clock.mark("inspect_s")
    check_provenance(frames, block.source)
    dark = block.mode is Mode.DARK
    valid = [f for f in frames if f.interlock_ok] or frames
    exptime = check_exposure_times(valid, options.checks, block.source)
    excluded = find_exclusions(frames, dark, options.checks)
    out_names = {e.name for e in excluded}
    used = [f for f in frames if f.name not in out_names]
    for e in excluded:
        plog.add(f"excluded {e.reason}")
    require_frames(len(used), options.min_frames, block.source, len(excluded))
    config = CombineConfig(
        method=options.method,
        band_rows=options.band_rows,
        noise=_noise_model(used) if options.method == "noise_clip" else None,
    )
    darktime = float(np.median([f.darktime for f in used]))
    folder = workdir / f"obsid{block.id}_results"
    folder.mkdir(parents=True, exist_ok=True)
    product = folder / f"{block.mode.product}.fits"
    product_uuid = str(uuid.uuid1())

    def header(qa: QAReport) -> Header:
        return product_header(
            used[0].header,
            block.mode,
            product_uuid=product_uuid,
            frame_uuids=[str(f.header.get("UUID", f.name)) for f in used],
            bias_uuid=bias.uuid if bias is not None else None,
            method=options.method,
            qa=qa,
            excluded=len(excluded),
        )

    def layout(qa: QAReport) -> list[ImagePlan | bytes]:  # no pixel yet
        return master_layout(header(qa), dark, darktime if dark else None)

    # The product is written while it is computed (reduce.productfile):
    # every band of the combination goes to disk as soon as it is final.
    out = ProductFile(
        product, layout(provisional_report(len(used), dark, options.thresholds))
    )
    try:
        sink = MasterSink(
            out,
            bias.data if bias is not None else None,
            bias.variance if bias is not None else None,
            darktime if dark else None,
            noise=config.noise or _noise_model(used),
            nframes=len(used),
            floor_adu=_typical_signal(used),
        )
        if combine is None:
            source = _raw_bands(used)
            combined = BandCombiner(source, config, threads=threads, on_band=sink).run()
        else:
            combined = combine(used, config, sink)
        data = combined.data  # bias subtracted
        plog.add(f"combined {len(used)} frames ({options.method}), threads {threads}")
        clock.mark("combine_s")
        models = [m for f in used for m in f.overscan]
        report, hot = qc_master(
            data,
            models,
            len(used),
            darktime if dark else None,
            options.thresholds,
            combined.npix,
            sink.cosmic_ray_pixels,
        )
        extra = [e.reason for e in excluded]
        if dark and bias is None:
            extra.append("no master bias subtracted (none named, none produced)")
        report = _with_reasons(report, extra)
        plog.add(f"QA {report.flag.value}" + "".join(f"; {r}" for r in report.reasons))
        clock.mark("qc_s")
        if dark:
            out.write_image("DQ", hot.mask)
        primary = layout(report)[0]
        assert isinstance(primary, ImagePlan)
        grown = out.finish(primary.header)
        if grown:  # many QA reasons
            plog.add(f"primary header outgrew its room by {grown} bytes; data moved")
    finally:
        out.abort()  # no-op once finished
    plog.add(f"wrote {product.name} (UUID {product_uuid})")
    clock.mark("write_s")
    write_json(
        folder / "result.json",
        result_document(
            block.mode.product,
            product.name,
            report,
            [(e.name, e.reason) for e in excluded],
        ),
    )
    task = {
        "id": block.id,
        "result": "result.json",
        "time_start": started,
        "time_end": datetime.datetime.now(datetime.UTC).isoformat(),
        "request": "reduce",
        "mode": block.mode.value,
        "instrument": "MEGARA",
        "product": {"file": product.name, "uuid": product_uuid},
        "inputs": {
            "frames": [
                {
                    "file": str(f.path),
                    "sha256": f.sha256,
                    "uuid": str(f.header.get("UUID", "")),
                    "exptime_s": f.exptime,
                    "darktime_s": f.darktime,
                    "checksum": f.checksum,
                    "used": f.name not in out_names,
                }
                for f in frames
            ],
            "master_bias": (
                {"file": str(bias.path), "uuid": bias.uuid} if bias else None
            ),
        },
        "excluded": [
            {"file": e.name, "why": e.kind.value, "reason": e.reason} for e in excluded
        ],
        "parameters": {
            "method": options.method,
            "min_frames": options.min_frames,
            "exact": options.exact,
            "threads": threads,
            "band_rows": options.band_rows,
            "exptime_s": exptime,
            "darktime_s": darktime,
            "thresholds": dataclasses.asdict(options.thresholds),
            "checks": dataclasses.asdict(options.checks),
        },
        "qc": _qc_document(report, used, dark),
        "qa": {"flag": report.flag.value, "reasons": list(report.reasons)},
        "software": software_versions(),
        "timings_s": clock.marks,
    }
    clock.mark("json_s")
    task["timings_s"] = {**clock.marks, "total_s": round(clock.last, 4)}
    write_json(folder / "task.json", task)
    plog.add(f"done in {clock.last:.3f} s")
    plog.write(folder / "processing.log")
    if block.mode is Mode.BIAS:
        produced["master_bias"] = product
    return Result(
        block_id=block.id,
        mode=block.mode,
        folder=folder,
        product=product,
        qa=report.flag.value,
        reasons=report.reasons,
        n_used=len(used),
        excluded=tuple(excluded),
        seconds=clock.last,
    )


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
    from reduce.preflight import check_blocks  # noqa: PLC0415 - imports this module

    opts = options or Options()
    blocks = load_blocks(ob_path)
    work = Path(workdir)
    check_blocks(blocks, Path(datadir), work, opts, overwrite=overwrite)
    work.mkdir(parents=True, exist_ok=True)
    produced: dict[str, Path] = {}
    return [run_block(b, Path(datadir), work, opts, produced, digests) for b in blocks]


def reduce_block(
    *,
    block_id: str,
    mode: str,
    frames: Sequence[str | Path],
    master_bias: str | Path | None,
    workdir: str | Path,
    options: Options | None = None,
) -> Result:
    """The sequencer's entry point: reduce one block of frame paths.

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
        mode=_mode(block_id, mode),
        frames=tuple(str(Path(f).resolve()) for f in frames),
        master_bias=str(master_bias) if master_bias is not None else None,
        source=f"block {block_id}",
    )
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    return run_block(block, work, work, options or Options())


def _mode(block_id: str, mode: str) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise InputError(
            block_id, f"mode {mode!r}, expected one of {[m.value for m in Mode]}"
        ) from None


class StreamingReduction:
    """Reduce a block while its frames arrive (the sequencer's online reduction).

    Each :meth:`add` reads a raw frame just written, once: it is checked
    (header, checksums, garbage), its overscan is fitted, and a valid frame is
    preprocessed (overscan subtracted, trimmed, float32) into a reused frame
    buffer and inserted into a running exact median (:mod:`reduce.window`,
    a scratch file in the product folder, nameless from the moment it is
    opened, freed by :meth:`close`), so that memory stays bounded whatever the number of
    frames and most of the combination is done before the last frame.
    :meth:`finish`, after the last one, runs the frame-set checks, reads the
    median and variance from the window and writes the same products as
    :func:`reduce_block` on the same files (identical arrays: the same
    selection, and the same arithmetic in the same order). Frames the
    sequencer marked invalid (``INTLKOK = F``) are recorded and excluded, not
    errors; they are not combined.

    The running median serves the ``median`` method when every valid frame
    added is used and there are at most ``nframes`` of them (fewer is fine).
    Otherwise (a frame excluded by the light-leak check, retakes beyond
    ``nframes``, ``noise_clip``, more than 64 frames) :meth:`finish` combines
    the frames used band by band from their raw files, as
    :func:`reduce_block` does: the same products, in more time.

    Parameters
    ----------
    block_id
        Block id (products in ``workdir/obsid<block_id>_results``).
    mode
        ``MegaraBiasImage`` or ``MegaraDarkImage``.
    nframes
        Valid frames expected; more may be added (retakes).
    master_bias
        Master bias for a dark block (None: none); read and checked here.
    workdir
        Work folder.
    options
        Reduction settings (defaults when None).

    Raises
    ------
    InputError
        From the constructor for a bad mode, frame count or master bias; from
        :meth:`add` for an unusable frame (the message names the file).
    """

    def __init__(
        self,
        *,
        block_id: str,
        mode: str,
        nframes: int,
        master_bias: str | Path | None,
        workdir: str | Path,
        options: Options | None = None,
    ) -> None:
        self._mode = _mode(block_id, mode)
        if nframes < 1:
            raise InputError(block_id, f"nframes={nframes}, expected >= 1")
        self._block_id = block_id
        self._options = options or Options()
        self._workdir = Path(workdir)
        self._clock, self._plog = _Clock(), ProcessingLog()
        self._started = datetime.datetime.now(datetime.UTC).isoformat()
        bias_path = (
            None
            if master_bias is None or self._mode is Mode.BIAS
            else Path(master_bias)
        )
        self._bias = read_master_bias(bias_path) if bias_path is not None else None
        self._frames: list[FrameInspection] = []
        self._combined: list[Path] = []  # valid frames in the window, in order
        self._frame: Float32Array | None = None
        self._closed = False
        folder = self._workdir / f"obsid{block_id}_results"
        folder.mkdir(parents=True, exist_ok=True)
        self._window: MedianWindow | None = None
        if self._options.method == "median" and nframes <= NETWORK_MAX_N:
            self._window = MedianWindow(
                folder / f".stream-{uuid.uuid4().hex}.median",
                nframes,
                threads=self._options.threads or default_threads(),
            )
        self._plog.add(
            f"block {block_id}: mode {self._mode.value}, streaming, "
            f"{nframes} frames expected"
        )
        if self._bias is not None:
            self._plog.add(f"master bias {self._bias.path} (UUID {self._bias.uuid})")

    @property
    def n_added(self) -> int:
        """Frames added so far (valid or not)."""
        return len(self._frames)

    @property
    def scratch_bytes(self) -> int:
        """Disk space held by the running median, bytes (0 when there is none)."""
        return self._window.scratch_bytes if self._window is not None else 0

    def _drop_window(self, why: str) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
            self._plog.add(f"running median abandoned: {why}")

    def _preprocess(
        self,
        stored: npt.NDArray[np.uint16],
        models: tuple[OverscanModel, OverscanModel],
    ) -> None:
        """Preprocess a checked frame and insert it into the running median."""
        if self._window is None:
            return  # finish() reads the raw files
        if self._window.n >= self._window.n_total:
            self._drop_window(f"more than {self._window.n_total} valid frames")
            return
        if self._frame is None:
            self._frame = np.empty(TRIMMED_SHAPE, dtype=np.float32)
        for amp, model in zip(AMPLIFIERS, models, strict=True):
            counts = to_counts(stored[amp.data_rows])[:, DATA_COLUMNS]
            subtract_model(counts, model.model, self._frame[amp.trimmed_rows])
        self._window.add(self._frame)

    def add(self, path: str | Path) -> None:
        """Read, check, preprocess and combine one raw frame just written.

        Raises
        ------
        InputError
            If the frame is unusable (wrong layout, mode, checksum...).
        """
        if self._closed:
            raise InputError(str(path), "streaming reduction already closed")
        backend: Literal["numpy", "fitpack"] = (
            "fitpack" if self._options.exact else "numpy"
        )
        n_before = self._window.n if self._window is not None else -1
        frame = inspect_frame(
            Path(path).resolve(),
            self._mode,
            bias=self._bias.data if self._bias is not None else None,
            backend=backend,
            sink=self._preprocess,
        )
        if self._window is not None and self._window.n > n_before:
            self._combined.append(frame.path)
        self._frames.append(frame)

    def _combine(
        self, used: Sequence[FrameInspection], config: CombineConfig, sink: BandSink
    ) -> Combined:
        window = self._window
        same = [f.path for f in used] == self._combined
        if window is not None and same and window.available():
            self._plog.add("median read from the running window")
            return window.result(on_band=sink)
        self._drop_window("frames excluded, or too few to combine")
        source = _raw_bands(used)
        threads = self._options.threads or default_threads()
        return BandCombiner(source, config, threads=threads, on_band=sink).run()

    def finish(self) -> Result:
        """Combine the frames added, write the products; the block's Result."""
        if self._closed:
            raise InputError(f"block {self._block_id}", "already closed")
        self._frame = None
        block = ReductionBlock(
            id=self._block_id,
            mode=self._mode,
            frames=tuple(str(f.path) for f in self._frames),
            master_bias=str(self._bias.path) if self._bias is not None else None,
            source=f"block {self._block_id}",
        )
        require_frames(len(self._frames), self._options.min_frames, block.source, 0)
        self._clock = _Clock()  # timings of the final step, after the last frame
        try:
            return _reduce_inspected(
                block,
                self._workdir,
                self._options,
                self._frames,
                self._bias,
                {},
                self._clock,
                self._plog,
                self._started,
                combine=self._combine,
            )
        finally:
            self.close()

    def close(self) -> None:
        """Remove the scratch file and release the buffers (idempotent)."""
        self._frame = None
        self._closed = True
        if self._window is not None:
            self._window.close()
            self._window = None

    def __enter__(self) -> StreamingReduction:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
