"""Reduce a block while its frames arrive: the sequencer's online reduction.

:class:`StreamingReduction` reads each raw frame once, as soon as it is
written, and keeps a running exact median of the frames (:mod:`reduce.window`),
so that the master is ready moments after the last frame; the last step is
the batch reduction's (:func:`reduce.pipeline.reduce_inspected`), so both
write the same products from the same files.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reduce.blocks import ReductionBlock, mode_named
from reduce.checks import require_frames
from reduce.combine import NETWORK_MAX_N, BandSink, CombineConfig, Combined
from reduce.documents import utc_now
from reduce.engine import combine_files, subtract_model, to_counts
from reduce.errors import InputError
from reduce.frames import FrameInspection, inspect_frame
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, TRIMMED_SHAPE
from reduce.io import ProcessingLog
from reduce.masters import MasterKind, load_master
from reduce.overscan import OverscanModel
from reduce.pipeline import BlockRun, Clock, Result, reduce_inspected
from reduce.rawframe import Mode
from reduce.settings import Options
from reduce.window import MedianWindow

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]


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
    :func:`reduce.batch.reduce_block` on the same files (identical arrays: the
    same selection, and the same arithmetic in the same order). Frames the
    sequencer marked invalid (``INTLKOK = F``) are recorded and excluded, not
    errors; they are not combined.

    The running median serves the ``median`` method when every valid frame
    added is used and there are at most ``nframes`` of them (fewer is fine).
    Otherwise (a frame excluded by the light-leak check, retakes beyond
    ``nframes``, ``noise_clip``, more than 64 frames) :meth:`finish` combines
    the frames used band by band from their raw files, as the batch
    reduction does: the same products, in more time.

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
        self._mode = mode_named(mode, block_id)
        if nframes < 1:
            raise InputError(block_id, f"nframes={nframes}, expected >= 1")
        self._block_id = block_id
        self._options = options or Options()
        self._workdir = Path(workdir)
        self._plog, self._started = ProcessingLog(), utc_now()
        bias_path = (
            None
            if master_bias is None or self._mode is Mode.BIAS
            else Path(master_bias)
        )
        self._bias = (
            load_master(bias_path, MasterKind.BIAS) if bias_path is not None else None
        )
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
                threads=self._options.worker_threads,
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
        n_before = self._window.n if self._window is not None else -1
        frame = inspect_frame(
            Path(path).resolve(),
            self._mode,
            bias=self._bias.data if self._bias is not None else None,
            backend=self._options.backend,
            sink=self._preprocess,
            temperature_keys=self._options.checks.temperature_keys,
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
        return combine_files(used, config, sink, threads=self._options.worker_threads)

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
        run = BlockRun(
            block,
            self._workdir,
            self._options,
            self._bias,
            self._plog,
            Clock(),  # timings of the final step, after the last frame
            self._started,
        )
        try:
            return reduce_inspected(run, self._frames, self._combine)
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
