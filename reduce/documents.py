"""The JSON documents of a block's products: ``result.json`` and ``task.json``.

``result.json`` is numina's (:func:`result_document`); ``task.json`` is the
structured description of the reduction (:func:`task_document`): inputs
with their checksums, parameters, QC figures, software versions and, added
by the caller when the rest is written, the timings. Every document is
written atomically (:func:`write_json`).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reduce.blocks import ReductionBlock
from reduce.checks import Excluded, Selection, frame_rate
from reduce.frames import FrameInspection
from reduce.io import write_text_atomic
from reduce.leaks import LeakScan
from reduce.masters import Master
from reduce.products import software_versions
from reduce.qc import QAReport
from reduce.rawframe import Mode
from reduce.settings import Options

log = logging.getLogger(__name__)


def utc_now() -> str:
    """The time now, UTC, ISO 8601 (``time_start``, ``time_end``)."""
    return datetime.datetime.now(datetime.UTC).isoformat()


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a JSON document atomically (indent 2, as numina)."""
    write_text_atomic(path, json.dumps(document, indent=2, allow_nan=False) + "\n")


def result_document(
    product: str,
    filename: str,
    qa: QAReport,
    excluded: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """numina's result.json: ``values``, ``qc`` (QC enum name) and ``uuid``.

    Beyond numina's keys (which its readers use, and ignore the rest):
    ``qc_reasons``, why the flag is not GOOD, and ``excluded``, each frame
    left out of the master with the reason (``file``, ``reason``).
    """
    return {
        "values": {product: filename},
        "qc": qa.flag.value,
        "uuid": str(uuid.uuid1()),
        "qc_reasons": list(qa.reasons),
        "excluded": [{"file": name, "reason": why} for name, why in excluded],
    }


def _figure(value: float | int | None, unit: str) -> dict[str, Any]:
    """A QC figure with its unit; a NaN or infinity is null (JSON has none)."""
    ok = value is None or (isinstance(value, int) or math.isfinite(value))
    return {"value": value if ok else None, "unit": unit}


def qc_document(
    report: QAReport,
    used: Sequence[FrameInspection],
    dark: bool,
    leak_scan: LeakScan | None = None,
) -> dict[str, Any]:
    """task.json's ``qc``: the figures per amplifier and, for a dark, each
    frame's dark rate and the smallest leak the light-leak check could see."""
    amps = [
        {
            "amplifier": a.amplifier,
            "dark_current": _figure(a.dark_current_e_pix_h, "e-/pix/h"),
            "read_noise": _figure(a.read_noise_e, "e-"),
            "overscan_level": _figure(a.overscan.level, "ADU"),
            "overscan_drift": _figure(a.overscan.drift, "ADU"),
            "overscan_slope": _figure(a.overscan.slope, "ADU"),
            "hot_pixels": _figure(a.hot_pixels, "pixels"),
            "hot_columns": _figure(a.hot_columns, "columns"),
            "cosmic_ray_pixels": _figure(a.cosmic_ray_pixels, "pixels"),
            "hot_column_pixels": _figure(a.hot_column_pixels, "pixels"),
            "cosmic_residuals": _figure(a.cosmic_residuals, "pixels"),
            "hot_rate_limit": _figure(a.hot_rate_limit_e_s, "e-/s"),
            "glow_peak": _figure(a.glow.peak_e_pix_h if a.glow else None, "e-/pix/h"),
            "glow_noise": _figure(a.glow.noise_e_pix_h if a.glow else None, "e-/pix/h"),
            "glow_at": {
                "value": [a.glow.row, a.glow.col] if a.glow else None,
                "unit": "trimmed pixel (row, column), 0-based",
            },
        }
        for a in report.amplifiers
    ]
    doc: dict[str, Any] = {
        "amplifiers": amps,
        "n_frames": _figure(report.n_frames, "frames"),
        "flagged_fraction": _figure(report.flagged_fraction, "fraction of pixels"),
        "hot_fraction": _figure(report.hot_fraction, "fraction of pixels"),
        "cosmic_residual_fraction": _figure(
            report.cosmic_residual_fraction, "fraction of pixels"
        ),
        "temperature": _figure(report.temperature_k, "K"),
    }
    if dark:
        doc["frame_dark_rate"] = {
            "unit": "e-/pix/s",
            "values": {f.name: frame_rate(f) for f in used},
        }
    if leak_scan is not None:
        doc["light_leak_sensitivity"] = {
            "uniform": _figure(leak_scan.uniform_limit_e_s, "e-/pix/s"),
            "tile": _figure(leak_scan.tile_limit_e_s, "e-/pix/s"),
        }
    return doc


def _inputs(
    frames: Sequence[FrameInspection],
    excluded: Sequence[Excluded],
    bias: Master | None,
) -> dict[str, Any]:
    """task.json's ``inputs``: every frame inspected, and the master bias."""
    out = {e.name for e in excluded}
    return {
        "frames": [
            {
                "file": str(f.path),
                "sha256": f.sha256,
                "uuid": str(f.header.get("UUID", "")),
                "exptime_s": f.exptime,
                "darktime_s": f.darktime,
                "checksum": f.checksum,
                "used": f.name not in out,
            }
            for f in frames
        ],
        "master_bias": {"file": str(bias.path), "uuid": bias.uuid} if bias else None,
    }


def _parameters(options: Options, chosen: Selection) -> dict[str, Any]:
    """task.json's ``parameters``: the options and the block's exposure."""
    return {
        "method": options.method,
        "min_frames": options.min_frames,
        "exact": options.exact,
        "threads": options.worker_threads,
        "band_rows": options.rows_per_band(len(chosen.used)),
        "exptime_s": chosen.exptime,
        "darktime_s": chosen.darktime,
        "thresholds": dataclasses.asdict(options.thresholds),
        "checks": dataclasses.asdict(options.checks),
    }


def task_document(
    block: ReductionBlock,
    options: Options,
    *,
    started: str,
    product: Path,
    product_uuid: str,
    frames: Sequence[FrameInspection],
    chosen: Selection,
    bias: Master | None,
    report: QAReport,
) -> dict[str, Any]:
    """task.json, all but ``timings_s`` (the caller adds it last, once timed).

    Parameters
    ----------
    block
        The block reduced.
    options
        How it was reduced.
    started
        When its reduction started (:func:`utc_now`).
    product, product_uuid
        The master's file and UUID.
    frames
        Every frame inspected, used or not.
    chosen
        The frames used and those excluded.
    bias
        The master bias subtracted (None: none).
    report
        The final QA report.
    """
    return {
        "id": block.id,
        "result": "result.json",
        "time_start": started,
        "time_end": utc_now(),
        "request": "reduce",
        "mode": block.mode.value,
        "instrument": "MEGARA",
        "product": {"file": product.name, "uuid": product_uuid},
        "inputs": _inputs(frames, chosen.excluded, bias),
        "excluded": [
            {"file": e.name, "why": e.kind.value, "reason": e.reason}
            for e in chosen.excluded
        ],
        "parameters": _parameters(options, chosen),
        "qc": qc_document(
            report, chosen.used, block.mode is Mode.DARK, chosen.leak_scan
        ),
        "qa": {"flag": report.flag.value, "reasons": list(report.reasons)},
        "software": software_versions(),
    }
