"""The pure steps of a block's reduction between its frames and its products.

From the frames' first pass (:class:`reduce.frames.FrameInspection`): the
combination's settings and noise model, and the model that the count of
pixels hit by cosmic rays compares with; from the QC: the final QA report,
with the reasons the block itself adds. No I/O, no state.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np

from reduce.checks import Excluded
from reduce.combine import CombineConfig, NoiseModel
from reduce.frames import FrameInspection
from reduce.geometry import AMPLIFIERS
from reduce.masterband import MIN_FRAMES, CosmicRayModel
from reduce.qalimits import QAFlag
from reduce.qc import QAReport

log = logging.getLogger(__name__)


def noise_model(frames: Sequence[FrameInspection]) -> NoiseModel:
    """Per amplifier, the frames' median overscan residual rms as read noise."""
    rn = tuple(
        float(np.median([f.overscan[k].residual_rms for f in frames]))
        for k in range(len(AMPLIFIERS))
    )
    return NoiseModel(read_noise_adu=(rn[0], rn[1]))


def typical_signal(frames: Sequence[FrameInspection]) -> tuple[float, float]:
    """Per amplifier, the frames' median sampled signal, ADU (>= 0)."""
    return (
        max(0.0, float(np.median([f.sample_level[0] for f in frames]))),
        max(0.0, float(np.median([f.sample_level[1] for f in frames]))),
    )


def combine_config(
    method: Literal["median", "noise_clip"],
    band_rows: int,
    used: Sequence[FrameInspection],
) -> CombineConfig:
    """The combination's settings; ``noise_clip`` gets the frames' noise model."""
    return CombineConfig(
        method=method,
        band_rows=band_rows,
        noise=noise_model(used) if method == "noise_clip" else None,
    )


def cosmic_ray_model(
    used: Sequence[FrameInspection], config: CombineConfig
) -> CosmicRayModel | None:
    """What the cosmic-ray count needs (None: too few frames to count)."""
    if len(used) < MIN_FRAMES:
        return None
    return CosmicRayModel(
        noise=config.noise or noise_model(used),
        nframes=len(used),
        floor_adu=typical_signal(used),
    )


def final_report(
    report: QAReport, excluded: Sequence[Excluded], dark: bool, bias_subtracted: bool
) -> QAReport:
    """The QC's report with the block's own reasons: frames excluded, and a
    dark without a master bias. Any of them makes a GOOD flag PARTIAL."""
    extra = [e.reason for e in excluded]
    if dark and not bias_subtracted:
        extra.append("no master bias subtracted (none named, none produced)")
    if not extra:
        return report
    flag = report.flag if report.flag is QAFlag.BAD else QAFlag.PARTIAL
    return dataclasses.replace(report, flag=flag, reasons=(*report.reasons, *extra))
