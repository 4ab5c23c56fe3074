"""``megara-dark verify`` on a real run's products, and its page in a browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sequencer.engineering.history import History
from tests.engineering.conftest import (
    CampaignRun,
    assert_images_decoded,
    cli,
    render,
)

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parent / "data"
PLOTS = {"master", "histogram", "hotmap", "amplifiers"}


def run_folder(sweep: CampaignRun, name: str) -> Path:
    return sweep.folder / "runs" / name / "work"


def test_verify_passes_within_limits_and_writes_the_report(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    history = tmp_path / "h.sqlite"
    done = cli(
        "verify", str(run_folder(sweep, "t163")), "--history", str(history),
        "--report-dir", str(tmp_path / "reports"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("dark_3: master dark ")
    assert any(ln.split()[:2] == ["PASS", "dark_current[amp"] for ln in lines)
    assert any(ln.startswith("verdict: PASS") for ln in lines)
    (folder,) = (tmp_path / "reports").iterdir()
    assert folder.name.startswith("verify-dark_3-")
    verdict = json.loads((folder / "verdict.json").read_text())
    assert verdict["verdict"] == "PASS"
    checks = {(c["figure"], c["amplifier"]): c for c in verdict["checks"]}
    assert checks[("dark_current", 1)]["value"] == pytest.approx(2.0, rel=0.05)
    assert 3.0 < checks[("read_noise", 2)]["value"] < 3.9  # simulator: 3.4 e-
    assert checks[("shutter_open_frames", None)]["value"] == 0
    # The close bracket holds the simulated 6 s motion (cover_motion_s).
    dark = verdict["dark_set"]
    assert checks[("cover_close_time", None)]["value"] == dark["cover_close_min_s"]
    assert dark["cover_close_min_s"] <= 6.0 <= dark["cover_close_s"]
    assert checks[("ccd_temperature", None)]["value"] == pytest.approx(163.15)
    frames = verdict["dark_set"]["frames"]
    assert [f["source"] for f in frames] == ["journal"] * 3
    assert all(f["shutter_max"] == "CLOSED" for f in frames)
    with History(history) as db:
        assert db.count() == 1

    page = render(folder / "report.html", tmp_path)
    assert page.find("p", id="verdict")[0].attrs["data-verdict"] == "PASS"
    assert_images_decoded(page, PLOTS)
    rows = [e.attrs for e in page.find("tr") if "data-figure" in e.attrs]
    assert len(rows) == len(verdict["checks"])
    assert {r["data-status"] for r in rows} <= {"pass", "unchecked"}
    assert len([e for e in page.find("tr") if "data-frame" in e.attrs]) == 3


def test_out_of_limits_exits_one_and_names_the_figure(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    config = tmp_path / "tight.toml"
    shutil.copy(DATA / "tight_limits.toml", config)
    done = cli(
        "verify", str(run_folder(sweep, "t163")), "--config", str(config),
        "--report-dir", str(tmp_path / "reports"), "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["verdict"] == "FAIL"
    assert verdict["failed"] == ["dark_current[amp 1]", "dark_current[amp 2]"]
    # The history named in the configuration, relative to it.
    with History(tmp_path / "tight-history.sqlite") as db:
        assert db.count() == 1
    (folder,) = (tmp_path / "reports").iterdir()
    page = render(folder / "report.html", tmp_path)
    assert page.find("p", id="verdict")[0].attrs["data-verdict"] == "FAIL"
    failed = {
        (e.attrs["data-figure"], e.attrs["data-amp"])
        for e in page.find("tr", **{"data-status": "fail"})
    }
    assert failed == {("dark_current", "1"), ("dark_current", "2")}
    assert_images_decoded(page, PLOTS)


def test_leaky_set_fails_on_the_light_leak_test(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    done = cli(
        "verify", str(run_folder(sweep, "leak").resolve()), "--no-history",
        "--report-dir", str(tmp_path), "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    verdict = json.loads(done.stdout)
    assert "light_leak_frames" in verdict["failed"]
    assert not (tmp_path / "megara-dark-runs").exists()  # no history written
    assert len(list(tmp_path.glob("verify-dark_4-*/report.html"))) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["verify"], "give either RESULTS"),
        (["verify", "no/such/folder"], "no/such/folder: no such folder"),
        (["trend", "dark_current", "--history", "none.sqlite"], "no history database"),
        (["trend", "dark_currant"], "'dark_currant' is not one of"),
    ],
)
def test_user_mistakes_are_one_line(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]


def test_a_bias_results_folder_is_refused(sweep: CampaignRun, tmp_path: Path) -> None:
    bias = run_folder(sweep, "t163") / "obsidbias_3_results"
    done = cli("verify", str(bias), "--no-history", cwd=tmp_path)
    assert done.returncode == 2
    assert "holds no master_dark.fits" in done.stderr


RUN_BLOCKS = """\
id: b3
instrument: MEGARA
mode: MegaraBiasImage
exptime: 0.0
nframes: 3
---
id: d3
instrument: MEGARA
mode: MegaraDarkImage
exptime: 600.0
nframes: 3
"""


def test_verify_run_takes_the_frames_then_verifies(tmp_path: Path) -> None:
    blocks = tmp_path / "ob.yaml"
    blocks.write_text(RUN_BLOCKS, encoding="utf-8")
    config = tmp_path / "sim.toml"
    config.write_text("[simulator]\ntime_scale = 4000.0\nseed = 2\n", encoding="utf-8")
    work = tmp_path / "run"
    done = cli(
        "verify", "--run", str(blocks), "--config", str(config),
        "--workdir", str(work), "--no-history", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)  # the run's own summary went to stderr
    assert "d3: 3/3 valid frames" in done.stderr
    assert verdict["dark_set"]["block"] == "d3"
    assert verdict["dark_set"]["n_frames"] == 3
    assert Path(verdict["report"]).is_file()
    assert Path(verdict["report"]).parent.parent == work


def test_verify_run_that_faults_verifies_nothing(tmp_path: Path) -> None:
    blocks = tmp_path / "ob.yaml"
    blocks.write_text(RUN_BLOCKS, encoding="utf-8")
    scenario = tmp_path / "stuck.yaml"
    scenario.write_text(
        "faults:\n  - {device: ccd, kind: shutter_stuck_open}\n", encoding="utf-8"
    )
    config = tmp_path / "sim.toml"
    config.write_text(
        '[simulator]\ntime_scale = 4000.0\nscenario = "stuck.yaml"\n', encoding="utf-8"
    )
    done = cli(
        "verify", "--run", str(blocks), "--config", str(config),
        "--workdir", str(tmp_path / "run"), "--no-history",
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "megara-dark: the run did not finish (exit status 1); nothing verified"
        )
    )
    assert not list((tmp_path / "run").glob("verify-*"))


def test_without_a_journal_the_evidence_comes_from_the_raw_headers(
    sweep: CampaignRun, tmp_path: Path
) -> None:
    # A set reduced offline (megara-dark reduce) has no run journal beside it.
    results = tmp_path / "obsiddark_3_results"
    shutil.copytree(run_folder(sweep, "t158") / "obsiddark_3_results", results)
    done = cli("verify", str(results), "--no-history", "--json")
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    frames = verdict["dark_set"]["frames"]
    assert len(frames) == 3
    assert {f["source"] for f in frames} == {"header"}
    assert {f["shutter_max"] for f in frames} == {"CLOSED"}
    assert {f["cover_worst"] for f in frames} == {"CLOSED"}
    checks = {c["figure"]: c for c in verdict["checks"] if c["amplifier"] is None}
    assert checks["cover_close_time"]["status"] == "unmeasured"
    assert checks["ccd_temperature"]["value"] == pytest.approx(158.0)
