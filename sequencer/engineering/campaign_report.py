"""The campaign summary: ``campaign.json`` and a self-contained ``campaign.html``.

Per run: settings, faults, outcome expected and seen, frames, retakes, QA
flags, verification verdict and the main QC figures; totals; and, when the
campaign's dark sets span two or more CCD temperatures, the dark current
against temperature with its fitted doubling step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sequencer import __version__
from sequencer.engineering import report
from sequencer.engineering.campaign import CampaignResult
from sequencer.engineering.limits import VerifySettings

_TREND_FIGURE = "dark_current"


def totals(result: CampaignResult) -> dict[str, Any]:
    """Counts over all runs."""
    runs = result.runs
    ran = [r for r in runs if r.seen.outcome != "not run"]
    return {
        "runs": len(runs),
        "ran": len(ran),
        "matched": sum(r.matched for r in runs),
        "differed": sum(not r.matched for r in ran),
        "not_run": len(runs) - len(ran),
        "valid_frames": sum(r.seen.valid_frames for r in runs),
        "invalid_frames": sum(r.seen.invalid_frames for r in runs),
        "retakes": sum(r.seen.retakes for r in runs),
        "faults_seen": sum(r.seen.outcome == "fault" for r in runs),
        "wall_s": round(sum(r.seen.wall_s for r in runs), 3),
    }


def _trend(result: CampaignResult, settings: VerifySettings) -> dict[str, Any] | None:
    temps = {r.seen.temperature_k for r in result.runs if r.seen.temperature_k}
    if len(temps) < 2 or not result.history.is_file():
        return None
    from sequencer.engineering.trend import trend  # noqa: PLC0415

    return trend(
        result.history,
        _TREND_FIGURE,
        "temperature",
        result.out,
        settings.limit(_TREND_FIGURE),
    )


def write_summary(
    result: CampaignResult, settings: VerifySettings, *, final: bool = False
) -> dict[str, Any]:
    """Write campaign.json and campaign.html (trend included when ``final``)."""
    doc: dict[str, Any] = {
        "campaign": result.campaign.name,
        "source": str(result.campaign.source),
        "started": result.started.isoformat(timespec="seconds"),
        "software": {"megara-dark": __version__},
        "verdict": "MATCHED" if result.matched else "DIFFERED",
        "complete": final and not result.interrupted,
        "interrupted": result.interrupted,
        "totals": totals(result),
        "history": str(result.history),
        "runs": [r.to_json_dict() for r in result.runs],
        "trend": None,
    }
    png = None
    if final:
        trend = _trend(result, settings)
        if trend is not None:
            doc["trend"] = {
                "figure": _TREND_FIGURE,
                "fits": trend["fits"],
                "png": trend["png"],
            }
            png = Path(trend["png"]).read_bytes()
    report.write_json(result.out / "campaign.json", doc)
    report.write_atomic(result.out / "campaign.html", _page(doc, result, png))
    return doc


def _run_rows(
    result: CampaignResult,
) -> tuple[list[list[object]], list[dict[str, str]]]:
    rows: list[list[object]] = []
    attrs: list[dict[str, str]] = []
    for r in result.runs:
        s, e = r.seen, r.spec.expect
        sim = r.spec.simulator
        faults = ", ".join(str(f.get("kind")) for f in r.spec.faults) or "none"
        figures = "; ".join(f"{k} {report.fmt(v)}" for k, v in s.figures.items())
        qa = ", ".join(f"{b}: {q}" for b, q in s.qa.items()) or "-"
        state = "pass" if r.matched else "fail"
        rows.append(
            [r.spec.name, sim.get("seed", 1), sim.get("ccd_temperature_k", "default"),
             sim.get("time_scale", "default"), faults,
             e.outcome, s.outcome, f"{s.valid_frames} / {s.invalid_frames}",
             s.retakes, qa, s.verify or "-", figures,
             "; ".join(r.differences) or ("as expected" if r.matched else s.outcome),
             s.message]
        )  # fmt: skip
        attrs.append(
            {"class": state, "data-run": r.spec.name, "data-matched": str(r.matched),
             "data-expected": e.outcome, "data-seen": s.outcome}
        )  # fmt: skip
    return rows, attrs


def _page(doc: dict[str, Any], result: CampaignResult, png: bytes | None) -> str:
    t = doc["totals"]
    state = "pass" if result.matched else "fail"
    rows, attrs = _run_rows(result)
    links = []
    for r in result.runs:
        if r.seen.report:
            rel = os.path.relpath(r.seen.report, result.out)
            links.append(
                f'<li><a href="{report.esc(rel)}">{report.esc(r.spec.name)}</a></li>'
            )
    parts = [
        f'<p class="verdict {state}" id="verdict" data-verdict="{doc["verdict"]}">'
        f"{doc['verdict']}: {t['matched']} of {t['runs']} run(s) as expected"
        + (" (interrupted)" if result.interrupted else "")
        + "</p>",
        report.table(
            [
                "runs",
                "as expected",
                "differed",
                "not run",
                "valid / invalid frames",
                "retakes",
                "faults seen",
                "wall time",
            ],
            [
                [
                    t["runs"],
                    t["matched"],
                    t["differed"],
                    t["not_run"],
                    f"{t['valid_frames']} / {t['invalid_frames']}",
                    t["retakes"],
                    t["faults_seen"],
                    f"{t['wall_s']:.1f} s",
                ]
            ],
        ),
        "<h2>Runs</h2>",
        report.table(
            [
                "run",
                "seed",
                "CCD K",
                "time scale",
                "faults",
                "expected",
                "seen",
                "valid / invalid frames",
                "retakes",
                "QA",
                "verify",
                "QC figures",
                "comparison",
                "message",
            ],
            rows,
            attrs,
        ),
    ]
    if png is not None and doc["trend"] is not None:
        fits = doc["trend"]["fits"]
        parts += [
            "<h2>Dark current against CCD temperature</h2>",
            report.image(png, "trend", "dark current against temperature"),
            report.table(
                ["series", "ln slope (1/K)", "doubles every (K)", "points"],
                [
                    [
                        k,
                        f"{v['log_slope_per_k']:.4g}",
                        report.fmt(v["doubling_k"]),
                        v["points"],
                    ]
                    for k, v in fits.items()
                ],
                [{"data-fit": k} for k in fits],
            ),
        ]
    if links:
        parts += ["<h2>Verification reports</h2>", f"<ul>{''.join(links)}</ul>"]
    parts.append(
        f"<p>Campaign file {report.esc(doc['source'])}; history "
        f"{report.esc(doc['history'])}; megara-dark {__version__}.</p>"
    )
    return report.page(f"Campaign: {doc['campaign']}", parts)
