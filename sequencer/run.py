"""A whole run: observing blocks in order, on real devices or the simulators.

Layout of a run's work folder::

    WORK/run.journal                 append-only, fsync'd record of progress
    WORK/data/<block>_<attempt>.fits MEGARA raw frames (invalid ones kept, marked)
    WORK/reduction.yaml              numina-style reduction blocks for the frames
    WORK/obsid<block>_results/       master bias or dark, result.json, task.json,
                                     processing.log (from the reduction)

A killed run started again with ``--resume`` reads the journal, adopts or
discards what the crash left, and carries on at the next frame.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from drivers.ccd import SerialCcdController
from drivers.cover import SerialCoverHalf, SerialFocalPlaneCover
from drivers.errors import ConfigError, MegaraDarkError, SequenceError
from sequencer import __version__
from sequencer.blocks import Mode, ObservingBlock
from sequencer.config import InstrumentConfig
from sequencer.journal import Journal, replay, resume_block
from sequencer.machine import DarkSequence, Devices, FrameRecord, Outcome, Pacing, Step
from sequencer.rawfits import FrameMeta, file_name, write_raw_frame
from sequencer.simlaunch import SimulatorProcess, start_simulators

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


@contextlib.contextmanager
def devices_for(config: InstrumentConfig) -> Iterator[tuple[Devices, bool]]:
    """Connect to the devices (starting the simulators if configured)."""
    sim: SimulatorProcess | None = None
    if config.devices is None:
        sim = start_simulators(config.simulator.argv())
        urls = sim.urls
    else:
        urls = dict(config.devices)
    ccd = SerialCcdController.from_config(config.ccd_config(urls["ccd"]))
    left = SerialCoverHalf.from_config(config.cover_config(urls["cover_left"], "left"))
    right = SerialCoverHalf.from_config(
        config.cover_config(urls["cover_right"], "right")
    )
    cover = SerialFocalPlaneCover(left, right)
    try:
        firmware = ccd.connect()
        cover.connect()
        log.info(
            "connected: ccd %s (firmware %s), cover %s, %s",
            ccd.url,
            firmware,
            left.url,
            right.url,
        )
        yield Devices(ccd, cover, (left.url, right.url)), sim is not None
    finally:
        ccd.close_link()
        cover.close_link()
        if sim is not None:
            sim.close()


class RunSink:
    """Writes a block's frames and journals them; reduces the block at its end."""

    def __init__(self, run: Run, block: ObservingBlock, result: BlockResult) -> None:
        self.run = run
        self.block = block
        self.result = result
        self.block_uuid = str(uuid.uuid5(run.run_uuid, block.id))

    def write(self, record: FrameRecord, valid: bool, reason: str) -> None:
        readout = record.readout
        assert readout is not None
        assert record.after is not None
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
            cover_before=record.before.cover,
            cover_after=record.after.cover,
            cover_worst=record.cover_worst,
            shutter_before=record.before.shutter,
            shutter_after=record.after.shutter,
            shutter_max=info.shutter_max.value,
            valid=valid,
            invalid_reason=reason or None,
            simulated=self.run.simulated,
            readout_bad_blocks=len(readout.bad_blocks),
            readout_rounds=readout.rounds,
            software_version=__version__,
        )
        path = self.run.datadir / file_name(self.block.id, record.attempt)
        write_raw_frame(path, readout.pixels, meta)
        self.run.journal.append(
            "frame_written",
            block=self.block.id,
            attempt=record.attempt,
            file=path.name,
            valid=valid,
            reason=reason,
            cover_before=meta.cover_before,
            cover_after=meta.cover_after,
            cover_worst=meta.cover_worst,
            shutter_before=meta.shutter_before,
            shutter_after=meta.shutter_after,
            shutter_max=meta.shutter_max,
            cover_close_s=record.cover_close_s,
            ccd_temp_start_k=meta.ccd_temp_start_k,
            ccd_temp_end_k=meta.ccd_temp_end_k,
        )
        (self.result.frames if valid else self.result.invalid).append(path)
        log.info(
            "%s: wrote %s%s", self.block.id, path.name, "" if valid else " (INVALID)"
        )

    def reduce(self) -> None:
        self.run.reduce_block(self.block, self.result)


class Run:
    """Runs a list of observing blocks and reduces each one."""

    def __init__(
        self,
        blocks: list[ObservingBlock],
        config: InstrumentConfig,
        workdir: Path,
        *,
        resume: bool = False,
    ) -> None:
        self.blocks = blocks
        self.config = config
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.simulated = config.simulated
        self.run_uuid = uuid.uuid4()
        self.current: DarkSequence | None = None
        self.current_result: BlockResult | None = None
        self.results: list[BlockResult] = []
        journal_path = workdir / "run.journal"
        if journal_path.exists() and not resume:
            raise ConfigError(
                f"{workdir} already holds a run (run.journal); use --resume to "
                "finish it, or choose another --workdir"
            )
        if resume and not journal_path.exists():
            raise ConfigError(f"{workdir}: nothing to resume (no run.journal)")
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(journal_path)
        self.state = replay(self.journal.records()) if resume else None

    def request_abort(self, signum: int, frame: FrameType | None) -> None:
        log.warning("%s received: stopping safely", signal.Signals(signum).name)
        if self.current is not None:
            self.current.abort_requested = True

    def execute(self) -> list[BlockResult]:
        """Run every block; stop at the first that fails."""
        self.journal.append(
            "run_resumed" if self.state is not None else "run_started",
            version=__version__,
            blocks=[b.id for b in self.blocks],
        )
        self.write_reduction_blocks()
        with devices_for(self.config) as (devices, _):
            for block in self.blocks:
                result = self.run_block(devices, block)
                self.results.append(result)
                self.current_result = None
                if result.outcome.error is not None or result.outcome.aborted:
                    break
        if len(self.results) == len(self.blocks) and all(
            r.outcome.error is None and not r.outcome.aborted for r in self.results
        ):
            self.journal.append("run_done")
        return self.results

    def run_block(self, devices: Devices, block: ObservingBlock) -> BlockResult:
        """Take (or finish taking) one block's frames, then reduce them."""
        result = BlockResult(block, Outcome())
        first_attempt = 0
        if self.state is not None:
            known = resume_block(self.journal, self.state, block.id, self.datadir)
            result.frames = [self.datadir / name for name in known.valid_files]
            result.invalid = [self.datadir / name for name in known.invalid_files]
            result.outcome.valid_frames = len(result.frames)
            result.outcome.retaken = known.retakes
            first_attempt = known.expected_next_attempt - 1
            if known.done and known.reduced:
                log.info("%s: already done and reduced; skipping", block.id)
                result.qa = known.qa
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
        pacing = Pacing(
            self.config.run,
            time_scale=self.config.time_scale,
            cover_motion_timeout_s=self.config.cover_config(
                "x", "left"
            ).motion_timeout_s,
        )
        sink = RunSink(self, block, result)
        sequence = DarkSequence(
            devices,
            block,
            sink,
            pacing,
            first_attempt=first_attempt,
            valid_so_far=len(result.frames),
        )
        sequence.outcome.retaken = result.outcome.retaken
        self.current = sequence
        try:
            result.outcome = sequence.run()
        finally:
            self.current = None
        if sequence.state is Step.DONE:
            self.journal.append(
                "block_done", block=block.id, retaken=result.outcome.retaken
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

    def write_reduction_blocks(self) -> Path:
        """The numina-style reduction blocks for this run's frames (so far).

        ``megara-dark reduce WORK/reduction.yaml --datadir WORK/data --workdir
        WORK`` (or ``numina run`` with megaradrp) reduces them again offline.
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
                bias = self.bias_for(block)
                doc["requirements"] = {"master_bias": str(bias)}
            docs.append(doc)
        path = self.workdir / "reduction.yaml"
        partial = path.with_name(".reduction.yaml.partial")
        partial.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        os.replace(partial, path)
        return path

    def reduce_block(self, block: ObservingBlock, result: BlockResult) -> None:
        from reduce.pipeline import reduce_block  # noqa: PLC0415 - heavy, on demand

        self.current_result = result
        self.write_reduction_blocks()
        bias = self.bias_for(block) if block.mode is Mode.DARK else None
        try:
            product = reduce_block(
                block_id=block.id,
                mode=block.mode.value,
                frames=result.frames + result.invalid,
                master_bias=bias,
                workdir=self.workdir,
            )
        except MegaraDarkError:
            raise
        except Exception as err:  # the reduction has its own error hierarchy
            raise SequenceError(f"{block.id}: reduction failed: {err}") from err
        result.products = product.folder
        result.qa = product.qa
        self.journal.append("reduction_done", block=block.id, qa=product.qa)
