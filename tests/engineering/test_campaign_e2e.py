"""A real campaign on the simulators: outcomes, the temperature law, its pages.

One campaign per session (``sweep`` in conftest): the same detector at three
CCD temperatures, a light leak into one dark, and a shutter stuck open. The
report must tell the truth about every run, and the dark current against
temperature must follow the simulators' law (``dark_current_scale``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sequencer.engineering.history import History
from sequencer.journal import Journal
from sequencer.simlaunch import megara_dark
from simulators.synthesis import dark_current_scale
from tests.engineering.conftest import (
    SWEEP_TEMPERATURES,
    CampaignRun,
    assert_images_decoded,
    cli,
    render,
)

pytestmark = pytest.mark.e2e


def summary(sweep: CampaignRun) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((sweep.folder / "campaign.json").read_text())
    return doc


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in doc["runs"]}


def test_every_run_as_expected_and_exit_zero(sweep: CampaignRun) -> None:
    assert sweep.done.returncode == 0, sweep.done.stdout + sweep.done.stderr
    doc = summary(sweep)
    assert doc["verdict"] == "MATCHED"
    assert doc["complete"] is True
    assert doc["totals"]["runs"] == 5
    assert doc["totals"]["matched"] == 5
    last = sweep.done.stdout.strip().splitlines()[-1]
    assert last.startswith("campaign sweep: 5/5 run(s) as expected, 0 differed")


def test_report_tells_what_each_run_did(sweep: CampaignRun) -> None:
    runs = by_name(summary(sweep))
    for name in ("t158", "t163", "t173"):
        seen = runs[name]["seen"]
        assert seen["outcome"] == "done"
        assert seen["valid_frames"] == 6
        assert seen["invalid_frames"] == 0
        assert seen["qa"] == {"bias_3": "GOOD", "dark_3": seen["qa"]["dark_3"]}
    # ~23 e-/pix/h: above the QA warn limit (15), below bad (30)
    assert runs["t173"]["seen"]["qa"]["dark_3"] == "PARTIAL"
    assert runs["t173"]["seen"]["verify"] == "fail"
    leak = runs["leak"]["seen"]
    assert leak["outcome"] == "done"
    assert leak["qa"]["dark_4"] == "PARTIAL"
    assert leak["verify"] == "fail"
    stuck = runs["stuck"]["seen"]
    assert stuck["outcome"] == "fault"
    assert stuck["exit_status"] == 1
    assert "shutter reads OPEN" in stuck["message"]
    assert stuck["verify"] is None
    totals = summary(sweep)["totals"]
    assert totals["valid_frames"] == 6 * 3 + 7
    assert totals["faults_seen"] == 1


def test_light_leak_is_what_fails_the_leaky_run(sweep: CampaignRun) -> None:
    work = sweep.folder / "runs" / "leak" / "work"
    task = json.loads((work / "obsiddark_4_results" / "task.json").read_text())
    assert [e["why"] for e in task["excluded"]] == ["light_leak"]
    assert task["excluded"][0]["file"] == "dark_4_0003.fits"  # readout 6
    with History(sweep.folder / "history.sqlite") as db:
        leaks = db.series("light_leak_frames")
    assert sorted(p.value for p in leaks) == [0.0, 0.0, 0.0, 1.0]


def close_bracket(sweep: CampaignRun, run: str) -> tuple[float, float]:
    records = Journal(sweep.folder / "runs" / run / "work" / "run.journal").records()
    written = [r for r in records if r["event"] == "frame_written"]
    return (
        max(r["cover_close_min_s"] for r in written),
        max(r["cover_close_s"] for r in written),
    )


def test_cover_close_time_is_bracketed_truthfully(sweep: CampaignRun) -> None:
    # Simulated truth: a 6 s motion, five times slower in the leak run.
    for run, truth in (("t158", 6.0), ("t163", 6.0), ("leak", 30.0)):
        low, high = close_bracket(sweep, run)
        assert 0.0 <= low <= truth <= high, (run, low, high)
    with History(sweep.folder / "history.sqlite") as db:
        figures = {p.block: p.value for p in db.series("cover_close_time")}
    assert figures["dark_4"] == close_bracket(sweep, "leak")[0]


def measured_dark_current(sweep: CampaignRun) -> dict[float, float]:
    """Mean of both amplifiers' dark current per simulated temperature."""
    with History(sweep.folder / "history.sqlite") as db:
        points = [p for p in db.series("dark_current") if p.block == "dark_3"]
    out: dict[float, list[float]] = {}
    for p in points:
        assert p.temperature_k is not None
        out.setdefault(round(p.temperature_k, 2), []).append(p.value)
    return {t: sum(v) / len(v) for t, v in out.items()}


def test_dark_current_follows_the_simulators_temperature_law(
    sweep: CampaignRun,
) -> None:
    measured = measured_dark_current(sweep)
    assert sorted(measured) == [round(t, 2) for t in SWEEP_TEMPERATURES]
    ref = 163.15
    # The simulated detector: 2 e-/pix/h at 163.15 K (DetectorConfig default).
    assert measured[ref] == pytest.approx(2.0, rel=0.05)
    for t, value in measured.items():
        law = dark_current_scale(t, ref)
        assert value / measured[ref] == pytest.approx(law, rel=0.08), t
    values = [measured[round(t, 2)] for t in SWEEP_TEMPERATURES]
    assert values == sorted(values)  # rises with temperature


def test_trend_against_temperature_matches_the_doubling_law(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    history = sweep.folder / "history.sqlite"
    done = cli(
        "trend", "dark_current", "--against", "temperature",
        "--history", str(history), "--out", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "trend-dark_current-temperature.json").read_text())
    lo, hi = SWEEP_TEMPERATURES[0], SWEEP_TEMPERATURES[-1]
    law_doubling = (hi - lo) * math.log(2) / math.log(dark_current_scale(hi, lo))
    for series in ("amp 1", "amp 2"):
        fit = doc["fits"][series]
        assert fit["log_slope_per_k"] > 0
        assert fit["doubling_k"] == pytest.approx(law_doubling, rel=0.08)
    assert doc["limits"] == {"min": None, "max": 5.0}
    png = (tmp_path / "trend-dark_current-temperature.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    page = render(tmp_path / "trend-dark_current-temperature.html", tmp_path)
    assert_images_decoded(page, {"trend"})
    assert {e.attrs["data-fit"] for e in page.find("tr") if "data-fit" in e.attrs} == {
        "amp 1",
        "amp 2",
    }


def test_campaign_page_in_a_browser(sweep: CampaignRun, tmp_path: Path) -> None:
    page = render(sweep.folder / "campaign.html", tmp_path)
    assert page.find("p", id="verdict")[0].attrs["data-verdict"] == "MATCHED"
    rows = {
        e.attrs["data-run"]: e.attrs for e in page.find("tr") if "data-run" in e.attrs
    }
    assert set(rows) == {"t158", "t163", "t173", "leak", "stuck"}
    assert rows["stuck"]["data-seen"] == "fault"
    assert rows["stuck"]["data-expected"] == "fault"
    assert all(r["data-matched"] == "True" for r in rows.values())
    assert_images_decoded(page, {"trend"})  # dark current against temperature
    assert "shutter reads OPEN" in page.text()


def test_a_wrong_expectation_exits_one_and_says_what_differed(tmp_path: Path) -> None:
    spec = tmp_path / "wrong.yaml"
    spec.write_text(
        "runs:\n"
        "  - name: stuck\n"
        "    blocks: [{id: b, instrument: MEGARA, mode: MegaraBiasImage, "
        "exptime: 0.0, nframes: 3}]\n"
        "    simulator: {time_scale: 4000.0}\n"
        "    faults: [{device: ccd, kind: shutter_stuck_open}]\n"
        "    expect: {outcome: done, valid_frames: 3}\n",
        encoding="utf-8",
    )
    done = cli("campaign", str(spec), "--out", str(tmp_path / "out"))
    assert done.returncode == 1, done.stderr
    assert "outcome: expected done, seen fault" in done.stdout
    doc = json.loads((tmp_path / "out" / "campaign.json").read_text())
    assert doc["verdict"] == "DIFFERED"
    run = doc["runs"][0]
    assert run["matched"] is False
    assert run["differences"] == [
        "outcome: expected done, seen fault",
        "valid frames: expected 3, seen 0",
    ]


def test_trend_against_date_and_the_real_only_filter(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    history = str(sweep.folder / "history.sqlite")
    done = cli("trend", "read_noise", "--history", history, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("read_noise: 8 point(s) against date")
    doc = json.loads((tmp_path / "trend-read_noise-date.json").read_text())
    assert doc["fits"] == {}
    assert doc["limits"] == {"min": 2.0, "max": 4.5}
    assert {p["series"] for p in doc["points"]} == {"amp 1", "amp 2"}
    page = render(tmp_path / "trend-read_noise-date.html", tmp_path)
    assert_images_decoded(page, {"trend"})
    # Every set of the campaign is simulated: none is left with --real.
    done = cli("trend", "read_noise", "--history", history, "--real")
    assert done.returncode == 2
    assert "no read_noise values" in done.stderr


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started_with_sigint_ignored", [False, True])
def test_ctrl_c_stops_the_run_safely_and_still_writes_the_summary(
    tmp_path: Path, started_with_sigint_ignored: bool
) -> None:
    """Also when started as a background job of a script (SIGINT ignored):
    the runs, which install their own handler, abort; so must the campaign."""
    spec = tmp_path / "two.yaml"
    spec.write_text(
        "defaults:\n"
        "  blocks: [{id: b, instrument: MEGARA, mode: MegaraBiasImage, "
        "exptime: 0.0, nframes: 50}]\n"
        "  simulator: {time_scale: 4000.0}\n"
        "runs:\n"
        "  - {name: first, expect: {outcome: done}}\n"
        "  - {name: second, expect: {outcome: done}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*megara_dark(), "campaign", str(spec), "--out", str(out), "--no-run-reports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_ignore_sigint if started_with_sigint_ignored else None,  # noqa: PLW1509
    )
    journal = out / "runs" / "first" / "work" / "run.journal"
    # Wait (no time limit) until the first run has written a frame.
    while proc.poll() is None and b"frame_written" not in _read(journal):
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at the terminal
    stdout, stderr = proc.communicate()
    assert proc.returncode == 130, stderr
    doc = json.loads((out / "campaign.json").read_text())
    assert doc["interrupted"] is True
    assert doc["complete"] is False
    first, second = doc["runs"]
    assert first["seen"]["outcome"] == "aborted"
    assert first["seen"]["exit_status"] == 130
    assert first["seen"]["valid_frames"] >= 1
    assert second["seen"]["outcome"] == "not run"
    assert "1 differed, 1 not run" in stdout


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""
