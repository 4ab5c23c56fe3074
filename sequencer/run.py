"""A whole run: observing blocks in order, on real devices or the simulators.

Layout of a run's work folder::

    WORK/run.journal                 append-only, fsync'd record of progress
    WORK/data/<block>_<attempt>.fits MEGARA raw frames (invalid ones kept, marked)
    WORK/reduction.yaml              numina-style reduction blocks for the frames
    WORK/obsid<block>_results/       master bias or dark, result.json, task.json,
                                     processing.log (from the reduction)

A killed run started again with ``--resume`` reads the journal, adopts or
discards what the crash left, and carries on at the next frame.

The reduction is online: each frame, once written, goes to a
:class:`reduce.online.StreamingReduction` on a worker thread, which checks
and preprocesses it while the next frame integrates; after the last frame only
the combination is left. On ``--resume`` the frames already on disk are fed
first.
"""

from __future__ import annotations

import logging
import signal
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import yaml

from drivers.errors import MegaraDarkError, SequenceError
from reduce.errors import ReductionError
from reduce.io import write_text_atomic
from reduce.rawframe import Mode
from sequencer import __version__
from sequencer.blocks import ObservingBlock
from sequencer.devices import Connected, devices_for
from sequencer.frame_record import FrameRecord, Outcome
from sequencer.hardware import Devices, Pacing
from sequencer.machine import DarkSequence, Step
from sequencer.progress import Reporter
from sequencer.rawfits import FrameMeta, file_name, write_raw_frame
from sequencer.recovery import exposures_done, resume_block
from sequencer.runfolder import check_same_devices, command_line
from sequencer.session import Session, run_key

if TYPE_CHECKING:
    from reduce.online import StreamingReduction

log = logging.getLogger(__name__)


@dataclass
class BlockResult:
    """What one block produced."""

    block: ObservingBlock
    outcome: Outcome
    frames: list[Path] = field(default_factory=list)
    invalid: list[Path] = field(default_factory=list)
    products: Path | None = None
    qa: str | None = None
    reasons: tuple[str, ...] = ()
    #: Frames the reduction left out: (file name, reason).
    excluded: tuple[tuple[str, str], ...] = ()


def _why(err: Exception) -> str:
    """An error's message; for a refused write, with what to do about it."""
    if not isinstance(err, OSError):
        return str(err)
    where = f" ({err.filename})" if err.filename else ""
    return (
        f"{err.strerror or err}{where}; free space or make the run folder "
        "writable, then finish the run (megara-dark run --resume WORKDIR)"
    )


def block_uuid(run_uuid: uuid.UUID, block_id: str) -> str:
    """The ``BLCKUUID`` of a block of a run: the same on every resume."""
    return str(uuid.uuid5(run_uuid, block_id))


class RunSink:
    """Writes a block's frames, journals them and streams them to the reduction.

    :meth:`write` returns at once: one worker thread writes the FITS file
    (atomically, fsync'd), journals it, reports it and hands it to the block's
    streaming reduction, while the machine clears the controller and starts
    the next exposure (the controller discards its frame at the next EXPOSE,
    so the pixels are already ours). The frames are written in order; a
    failure is raised at the next frame or at :meth:`reduce`, which waits for
    the frames in hand and finishes. Use as a context manager, so that the
    worker finishes the frames in hand whatever happens.
    """

    def __init__(self, run: Run, block: ObservingBlock, result: BlockResult) -> None:
        self.run = run
        self.block = block
        self.result = result
        self.block_uuid = block_uuid(run.run_uuid, block.id)
        self._reduction: StreamingReduction | None = None
        self._worker = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"reduce-{block.id}"
        )
        self._pending: list[tuple[Path, Future[None]]] = []

    def __enter__(self) -> RunSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the frames in hand (written frames are kept), then release."""
        self._worker.shutdown(wait=True)
        if self._reduction is not None:
            self._reduction.close()

    def _streaming(self) -> StreamingReduction:
        if self._reduction is None:
            from reduce.online import StreamingReduction  # noqa: PLC0415 - heavy
            from reduce.settings import Options  # noqa: PLC0415

            block = self.block
            try:
                self._reduction = StreamingReduction(
                    block_id=block.id,
                    mode=block.mode.value,
                    nframes=block.nframes,
                    master_bias=self.run.bias_for(block)
                    if block.mode is Mode.DARK
                    else None,
                    workdir=self.run.workdir,
                    options=Options.from_qc_file(
                        self.run.config.reduce.qc_config,
                        min_frames=self.run.config.reduce.min_frames,
                    ),
                )
            except (ReductionError, OSError) as err:
                raise SequenceError(
                    f"{block.id}: cannot start the reduction: {err}"
                ) from err
        return self._reduction

    def feed(self, path: Path) -> None:
        """Hand a frame already on disk (valid or not) to the reduction."""
        self._check_failed()
        self._pending.append((path, self._worker.submit(self._add, path)))

    def _add(self, path: Path) -> None:
        reduction = self._streaming()
        try:
            reduction.add(path)
        except (ReductionError, OSError) as err:
            raise SequenceError(
                f"{self.block.id}: reduction of {path.name} failed: {_why(err)}"
            ) from err

    def _check_failed(self, *, wait: bool = False) -> None:
        """Raise the first failure of the frames handed over (all, with wait)."""
        for path, future in self._pending:
            if not (wait or future.done()):
                continue
            err = future.exception()
            if isinstance(err, MegaraDarkError):
                raise err
            if err is not None:
                raise SequenceError(
                    f"{self.block.id}: handling {path.name} failed: {err!r}"
                ) from err
        self._pending = [(p, f) for p, f in self._pending if not f.done()]

    def write(self, record: FrameRecord, valid: bool, reason: str) -> str:
        readout = record.readout
        if readout is None:
            raise SequenceError(f"{self.block.id}: {record.attempt} not read out")
        info = readout.info
        meta = FrameMeta(
            mode=self.block.mode.value,
            exptime_s=self.block.exptime,
            darktime_s=record.darktime_s,
            date_obs=record.date_obs,
            block_id=self.block.id,
            block_uuid=self.block_uuid,
            frame_index=record.index,
            attempt=record.attempt,
            uuid=str(uuid.uuid4()),
            ccd_temp_start_k=info.temp_start_k,
            ccd_temp_end_k=info.temp_end_k,
            interlock=record.evidence,
            valid=valid,
            invalid_reason=reason or None,
            simulated=self.run.simulated,
            readout_bad_blocks=readout.refetched,
            readout_rounds=readout.rounds,
            software_version=__version__,
        )
        path = self.run.datadir / file_name(self.block.id, record.attempt)
        self._check_failed()
        job = self._worker.submit(self._store, path, readout.pixels, meta, record)
        self._pending.append((path, job))
        return path.name

    def _store(
        self,
        path: Path,
        pixels: npt.NDArray[np.uint16],
        meta: FrameMeta,
        record: FrameRecord,
    ) -> None:
        """On the worker: write, journal, report, then reduce one frame."""
        valid, reason = meta.valid, meta.invalid_reason or ""
        try:
            write_raw_frame(path, pixels, meta)
        except OSError as err:
            raise SequenceError(
                f"{self.block.id}: cannot write {path}: {err.strerror or err}; "
                "check the disk (space, permissions); the frame is lost"
            ) from err
        self.run.journal.append(
            "frame_written",
            block=self.block.id,
            attempt=record.attempt,
            file=path.name,
            valid=valid,
            reason=reason,
            uuid=meta.uuid,
            **meta.interlock.journal_fields(),
            cover_close_s=record.cover_close_s,
            cover_close_min_s=record.cover_close_min_s,
            ccd_temp_start_k=meta.ccd_temp_start_k,
            ccd_temp_end_k=meta.ccd_temp_end_k,
        )
        (self.result.frames if valid else self.result.invalid).append(path)
        log.info(
            "%s: wrote %s%s", self.block.id, path.name, "" if valid else " (INVALID)"
        )
        self.run.report.emit(
            "frame_written" if valid else "frame_invalid",
            block=self.block.id,
            frame=record.index,
            attempt=record.attempt,
            file=path.name,
            **({} if valid else {"reason": reason}),
        )
        self._add(path)

    def reduce(self) -> None:
        """Wait for the frames in hand, combine them and write the products."""
        self._check_failed(wait=True)
        self.run.current_result = self.result
        self.run.write_reduction_blocks()
        try:
            product = self._streaming().finish()
        except (ReductionError, OSError) as err:
            raise SequenceError(
                f"{self.block.id}: reduction failed: {_why(err)}"
            ) from err
        self.run.reduction_done(self.block, self.result, product)


class Run:
    """Runs the observing blocks of an opened run folder and reduces each one."""

    def __init__(self, session: Session, *, reporter: Reporter | None = None) -> None:
        self.session = session
        self.blocks = session.plan
        self.report = reporter if reporter is not None else Reporter()
        self.stop_signal: int | None = None  # the signal that asked us to stop
        self.stop_reason: str | None = None  # its name
        self.config = session.config
        self.workdir = session.workdir
        self.datadir = session.workdir / "data"
        self.simulated = self.config.simulated
        self.run_uuid = session.record.run_id
        self.current: DarkSequence | None = None
        self.current_result: BlockResult | None = None
        self.results: list[BlockResult] = []
        self.journal = session.journal
        self.state = session.state

    def request_abort(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: stop safely at the next check (the exit status says why)."""
        name = signal.Signals(signum).name
        log.warning("%s received: stopping safely", name)
        self.stop_signal = signum
        self.stop_reason = name
        if self.current is not None:
            self.current.abort_reason = name
            self.current.abort_requested = True

    def execute(self) -> list[BlockResult]:
        """Run every block; stop at the first that fails."""
        if self.state is not None:
            self.journal.append(
                "run_resumed", version=__version__, command=command_line()
            )
        self.write_reduction_blocks()
        self.report.emit(
            "run_started",
            workdir=str(self.workdir),
            blocks=[b.id for b in self.blocks],
            resume=self.state is not None,
            plan=[
                {"block": b.id, "nframes": b.nframes, "exptime_s": b.exptime}
                for b in self.blocks
            ],
            time_scale=self.config.time_scale,
            readout_s=self.config.run.readout_s,
        )
        taken = 0 if self.state is None else exposures_done(self.state, self.datadir)
        key = run_key(self.config, self.session.record)
        resumed = self.state is not None
        if resumed and self.config.simulator.scenario and self.config.devices is None:
            log.warning(
                "resuming on the built-in simulators without the fault scenario "
                "%s: its faults were the first start's",
                self.config.simulator.scenario,
            )
        with devices_for(
            self.config, first_frame=taken, run_key=key, scenario=not resumed
        ) as connected:
            self._identified(connected)
            for block in self.blocks:
                result = self.run_block(connected.devices, block)
                self.results.append(result)
                self.current_result = None
                if result.outcome.error is not None or result.outcome.aborted:
                    break
        if self.stop_reason is not None:
            self.journal.append("stopped", signal=self.stop_reason)
        if len(self.results) == len(self.blocks) and all(
            r.outcome.error is None and not r.outcome.aborted for r in self.results
        ):
            self.journal.append("run_done")
        return self.results

    def _identified(self, connected: Connected) -> None:
        """Record the devices (first start) or check them (resume)."""
        recorded = self.session.devices
        if recorded is None:
            self.journal.append("devices", devices=connected.identities)
        else:
            check_same_devices(recorded, connected.identities, self.workdir)
            self.journal.append("devices_checked", devices=connected.identities)
        self.simulated = connected.simulated
        sim = connected.simulator
        self.report.emit(
            "devices",
            ccd=connected.devices.ccd.url,
            cover=list(connected.devices.cover_urls),
            simulator_pid=sim.pid if sim is not None else None,
            simulated=self.simulated,
            identities=connected.identities,
        )

    def run_block(self, devices: Devices, block: ObservingBlock) -> BlockResult:
        """Take (or finish taking) one block's frames, then reduce them."""
        result = BlockResult(block, Outcome())
        first_attempt = 0
        if self.state is not None:
            known = resume_block(
                self.journal,
                self.state,
                block.id,
                self.datadir,
                block_uuid=block_uuid(self.run_uuid, block.id),
            )
            result.frames = [self.datadir / name for name in known.valid_files]
            result.invalid = [self.datadir / name for name in known.invalid_files]
            result.outcome.valid_frames = len(result.frames)
            result.outcome.retaken = known.retakes
            first_attempt = known.expected_next_attempt - 1
            if known.done and known.reduced:
                log.info("%s: already done and reduced; skipping", block.id)
                result.qa = known.qa
                result.reasons = tuple(known.reasons)
                result.excluded = tuple(
                    (e.get("file", "?"), e.get("reason", "?")) for e in known.excluded
                )
                result.products = self.workdir / f"obsid{block.id}_results"
                return result
            if known.started:
                log.info(
                    "%s: resuming with %d valid frame(s), at attempt %d",
                    block.id,
                    len(result.frames),
                    first_attempt + 1,
                )
        self.journal.append("block_started", block=block.id)
        self.report.emit(
            "block_started",
            block=block.id,
            mode=block.mode.value,
            nframes=block.nframes,
            exptime_s=block.exptime,
            valid=len(result.frames),
        )
        pacing = Pacing(
            self.config.run,
            time_scale=self.config.time_scale,
            cover_motion_timeout_s=self.config.cover_config(
                "x", "left"
            ).motion_timeout_s,
        )
        with RunSink(self, block, result) as sink:
            sequence = DarkSequence(
                devices,
                block,
                sink,
                pacing,
                first_attempt=first_attempt,
                valid_so_far=len(result.frames),
                reporter=self.report,
            )
            sequence.outcome.retaken = result.outcome.retaken
            if self.stop_reason is not None:  # a signal between two blocks
                sequence.abort_reason = self.stop_reason
                sequence.abort_requested = True
            self.current = sequence
            try:
                # Frames a killed run left on disk go to the reduction first.
                for path in sorted(result.frames + result.invalid):
                    sink.feed(path)
                if len(result.frames) >= block.nframes:
                    # Every frame was taken before the crash: reduce only.
                    sink.reduce()
                    result.outcome = sequence.outcome
                    done = True
                else:
                    result.outcome = sequence.run()
                    done = sequence.state is Step.DONE
            except MegaraDarkError as err:
                done = False
                result.outcome = sequence.outcome
                result.outcome.error = err
                self.report.emit(
                    "fault", block=block.id, state="IDLE", message=str(err)
                )
            finally:
                self.current = None
        # The writer has drained: what it stored is the truth. A fault after a
        # frame was handed over (CLEAR unanswered, say) must not hide a valid
        # frame that is on disk and journaled.
        result.outcome.valid_frames = len(result.frames)
        if done:
            self.journal.append(
                "block_done", block=block.id, retaken=result.outcome.retaken
            )
            self.report.emit(
                "block_done",
                block=block.id,
                valid=result.outcome.valid_frames,
                retaken=result.outcome.retaken,
            )
        elif result.outcome.error is not None:
            self.journal.append(
                "fault", block=block.id, error=str(result.outcome.error)
            )
        return result

    def bias_for(self, block: ObservingBlock) -> Path | None:
        if block.master_bias is not None:
            return block.master_bias
        if block.bias_from is None:
            return None
        return self.workdir / f"obsid{block.bias_from}_results" / "master_bias.fits"

    def _bias_entry(self, block: ObservingBlock) -> str:
        """The master bias as ``reduction.yaml`` names it: a product of this run
        relative to the run folder (where ``megara-dark reduce`` looks first),
        any other file by its absolute path."""
        if block.bias_from is not None:
            return f"obsid{block.bias_from}_results/master_bias.fits"
        bias = self.bias_for(block)
        return str(bias.absolute()) if bias is not None else ""

    def write_reduction_blocks(self) -> Path:
        """The numina-style reduction blocks for this run's frames (so far).

        From inside the run folder, ``megara-dark reduce reduction.yaml
        --datadir data --workdir . --overwrite`` (or ``numina run`` with
        megaradrp) reduces them again offline.
        """
        done = {r.block.id: r for r in self.results}
        if self.current_result is not None:
            done[self.current_result.block.id] = self.current_result
        docs: list[dict[str, Any]] = []
        for block in self.blocks:
            result = done.get(block.id)
            doc: dict[str, Any] = {
                "id": block.id,
                "instrument": "MEGARA",
                "mode": block.mode.value,
                "frames": [p.name for p in result.frames] if result else [],
            }
            if block.mode is Mode.DARK:
                doc["requirements"] = {"master_bias": self._bias_entry(block)}
            docs.append(doc)
        path = self.workdir / "reduction.yaml"
        try:
            write_text_atomic(path, yaml.safe_dump_all(docs, sort_keys=False))
        except OSError as err:
            raise SequenceError(
                f"{path}: cannot write the reduction blocks ({err.strerror or err}); "
                f"free space or make {self.workdir} writable, then finish the run "
                "with --resume"
            ) from err
        return path

    def reduction_done(
        self, block: ObservingBlock, result: BlockResult, product: Any
    ) -> None:
        """Record a block's reduction (``product``: a reduce.pipeline.Result)."""
        result.products = product.folder
        result.qa = product.qa
        result.reasons = tuple(product.reasons)
        result.excluded = tuple((e.name, e.reason) for e in product.excluded)
        excluded = [{"file": name, "reason": why} for name, why in result.excluded]
        self.journal.append(
            "reduction_done",
            block=block.id,
            qa=product.qa,
            reasons=list(result.reasons),
            used=product.n_used,
            excluded=excluded,
        )
        self.report.emit(
            "reduction_done",
            block=block.id,
            qa=product.qa,
            folder=str(product.folder),
            product=str(product.product),
            reasons=list(product.reasons),
            used=product.n_used,
            excluded=excluded,
        )
