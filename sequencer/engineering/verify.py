"""Engineering verification of one dark set: figures against limits, a report.

:func:`verify` gathers the QC figures (:mod:`sequencer.engineering.figures`),
judges each against the ``[verify]`` limits of the instrument configuration,
and writes a dated report folder::

    <parent>/verify-<block>-<UTC date and time>/
        report.html     self-contained page: verdict, figures against limits,
                        master dark, histogram, hot-pixel map, per-frame evidence
        verdict.json    the same verdict, machine-readable

The folder is assembled under a hidden temporary name and renamed when
complete, so a report folder that exists is whole.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from reduce.fits.reader import FitsFile
from sequencer import __version__
from sequencer.engineering import plots, report
from sequencer.engineering.figures import DarkSet, Figure
from sequencer.engineering.limits import FIGURES, Limit, VerifySettings

log = logging.getLogger(__name__)

PASS, FAIL, UNMEASURED, UNCHECKED = "pass", "fail", "unmeasured", "unchecked"
#: Interlock readings in the order of the frame table's columns.
_READINGS = (
    "cover_before",
    "cover_worst",
    "cover_after",
    "shutter_before",
    "shutter_max",
    "shutter_after",
)
_SPLIT_ROW = 2056  # trimmed rows of amplifier 1


@dataclass(frozen=True)
class Check:
    """One figure judged against its limits."""

    figure: Figure
    limit: Limit
    status: str  # PASS, FAIL, UNMEASURED (no value) or UNCHECKED (no limits)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure.name,
            "amplifier": self.figure.amplifier,
            "value": self.figure.value,
            "unit": self.figure.unit,
            "min": self.limit.min,
            "max": self.limit.max,
            "status": self.status,
        }


def judge(figures: list[Figure], settings: VerifySettings) -> list[Check]:
    """Judge every figure against its limits."""
    checks = []
    for fig in figures:
        limit = settings.limit(fig.name)
        if fig.value is None:
            status = UNMEASURED
        elif not limit.checked:
            status = UNCHECKED
        else:
            status = PASS if limit.allows(fig.value) else FAIL
        checks.append(Check(fig, limit, status))
    return checks


@dataclass
class Verdict:
    """The outcome of verifying one dark set."""

    dark: DarkSet
    checks: list[Check]
    verified_at: datetime
    report_dir: Path | None = None

    @property
    def passed(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "verdict": "PASS" if self.passed else "FAIL",
            "verified_at": self.verified_at.isoformat(),
            "software": {"megara-dark": __version__},
            "dark_set": self.dark.to_json_dict(),
            "checks": [c.to_json_dict() for c in self.checks],
            "failed": [c.figure.label for c in self.failed],
            "report": str(self.report_dir / "report.html") if self.report_dir else None,
        }

    def summary_lines(self) -> list[str]:
        """What the terminal shows: one line per figure, then the verdict."""
        d = self.dark
        lines = [
            f"{d.block_id}: master dark {d.product_uuid}, {d.n_frames} frames of "
            f"{d.exptime_s:g} s, QA {d.qa}"
        ]
        for c in self.checks:
            value = report.fmt(c.figure.value)
            lines.append(
                f"  {c.status.upper():10s} {c.figure.label:28s} {value:>10s} "
                f"{c.figure.unit:9s} limits {c.limit.describe()}"
            )
        counts = {s: sum(c.status == s for c in self.checks) for s in (PASS, FAIL)}
        lines.append(
            f"verdict: {'PASS' if self.passed else 'FAIL'} ({counts[PASS]} within "
            f"limits, {counts[FAIL]} out of limits"
            + (
                f": {', '.join(c.figure.label for c in self.failed)}"
                if self.failed
                else ""
            )
            + ")"
        )
        return lines


def verify(
    dark: DarkSet, settings: VerifySettings, *, now: datetime | None = None
) -> Verdict:
    """Judge ``dark``'s figures against ``settings`` (no files written)."""
    return Verdict(dark, judge(dark.figures, settings), now or datetime.now(UTC))


def write_report(verdict: Verdict, parent: Path) -> Path:
    """Write the dated report folder under ``parent``; return it."""
    stamp = verdict.verified_at.strftime("%Y%m%dT%H%M%S")
    final = parent / f"verify-{verdict.dark.block_id}-{stamp}"
    n = 2
    while final.exists():
        final = parent / f"verify-{verdict.dark.block_id}-{stamp}-{n}"
        n += 1
    work = parent / f".{final.name}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    verdict.report_dir = final
    report.write_atomic(work / "report.html", render(verdict))
    report.write_json(work / "verdict.json", verdict.to_json_dict())
    os.replace(work, final)
    return final


def _load_images(
    master: Path,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[float]]:
    """Dark rate (e-/pix/h), DQ mask, and one ADU in e-/pix/h per amplifier."""
    with FitsFile(master, "master dark") as product:
        rate = product.image("DARKRATE").astype(np.float32) * np.float32(3600)
        dq = product.image("DQ").astype(np.uint8)
        header = product.primary().header
        darktime = float(header.get("DARKTIME") or header.get("EXPTIME") or 1.0)
        gains = [float(header.get(f"GAIN{n}", 1.0)) for n in (1, 2)]
    return rate, dq, [g * 3600.0 / darktime for g in gains]


def render(verdict: Verdict) -> str:
    """The report page of ``verdict`` (HTML, images inline)."""
    d = verdict.dark
    rate, dq, quanta = _load_images(d.master_dark)
    limits = {name: verdict_limit(verdict, name) for name in FIGURES}
    state = PASS if verdict.passed else FAIL
    summary = report.table(
        ["block", "master dark", "DATE-OBS", "exposure", "frames", "CCD temperature",
         "reduction QA", "simulated", "verified at"],
        [[d.block_id, d.product_uuid, d.date_obs, f"{d.exptime_s:g} s", d.n_frames,
          report.fmt(d.temperature_k, 6) + " K", d.qa, d.simulated,
          verdict.verified_at.isoformat(timespec="seconds")]],
    )  # fmt: skip
    checks = report.table(
        ["figure", "amplifier", "value", "unit", "limits", "status"],
        [
            [c.figure.name, c.figure.amplifier or "-", report.fmt(c.figure.value),
             c.figure.unit, c.limit.describe(), c.status.upper()]
            for c in verdict.checks
        ],
        [
            {"class": c.status, "data-figure": c.figure.name,
             "data-amp": str(c.figure.amplifier or ""), "data-status": c.status,
             "data-value": repr(c.figure.value)}
            for c in verdict.checks
        ],
    )  # fmt: skip
    frames = report.table(
        ["frame", "valid", "cover before", "cover during (worst)", "cover after",
         "shutter before", "shutter max", "shutter after", "CCD K", "from", "reason"],
        [
            [f.file, f.valid, *(r[k] for k in _READINGS),
             report.fmt(f.temperature_k, 6), f.source, f.reason]
            for f, r in ((f, f.readings()) for f in d.frames)
        ],
        [{"class": PASS if f.valid else FAIL, "data-frame": f.file} for f in d.frames],
    )  # fmt: skip
    images = [
        report.image(plots.master_image(rate), "master", "master dark (e-/pix/h)"),
        report.image(
            plots.histogram(
                rate, _SPLIT_ROW, quanta, d.figures, limits["dark_current"]
            ),
            "histogram",
            "dark-current histogram per amplifier",
        ),
        report.image(plots.hot_pixel_map(dq), "hotmap", "hot-pixel map (DQ mask)"),
        report.image(
            plots.amplifier_panels(d.figures, limits),
            "amplifiers",
            "per-amplifier figures against limits",
        ),
    ]
    reasons = "".join(f"<li>{report.esc(r)}</li>" for r in d.qa_reasons)
    cover = f"at least {report.fmt(d.cover_close_min_s)} s, at most " + (
        f"{report.fmt(d.cover_close_s)} s"
    )
    return report.page(
        f"Dark verification: {d.block_id}",
        [
            f'<p class="verdict {state}" id="verdict" data-verdict="{state.upper()}">'
            f"{state.upper()}: {len(verdict.failed)} figure(s) out of limits</p>",
            summary,
            "<h2>Figures against limits</h2>",
            checks,
            f"<p>Reduction QA {report.esc(d.qa)}</p><ul>{reasons}</ul>",
            "<h2>Plots</h2>",
            *images,
            "<h2>Interlock evidence per frame</h2>",
            f"<p>Cover close time: {report.esc(cover)} (device seconds; the "
            "slowest close of the run, bracketed by the status polls).</p>",
            frames,
            f"<p>Source: {report.esc(d.folder)}; megara-dark {__version__}.</p>",
        ],
    )


def verdict_limit(verdict: Verdict, name: str) -> Limit:
    """The limit a verdict applied to figure ``name`` (its default if unused)."""
    for c in verdict.checks:
        if c.figure.name == name:
            return c.limit
    return FIGURES[name].default
