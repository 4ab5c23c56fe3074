"""Campaign files: every mistake is one line before any run starts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from sequencer.engineering.campaign_spec import load_campaign
from tests.engineering.conftest import cli

BLOCK = "{id: b, instrument: MEGARA, mode: MegaraBiasImage, exptime: 0.0, nframes: 1}"


def campaign(body: str, tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def run_entry(extra: str = "", expect: str = "{outcome: done}") -> str:
    return f"runs:\n  - name: r1\n    blocks: [{BLOCK}]\n    expect: {expect}\n{extra}"


PARSE_ERRORS = {
    "not yaml": ("runs: [\n", "not valid YAML"),
    "no runs": ("campaign: x\n", "'runs' must be a non-empty list"),
    "top key": ("camp: x\n" + run_entry(), "unknown key(s) camp"),
    "name": (
        f"runs:\n  - name: 'a b'\n    blocks: [{BLOCK}]\n    expect: {{outcome: done}}\n",
        "run #1: name 'a b'",
    ),
    "twice": (
        run_entry() + f"  - name: r1\n    blocks: [{BLOCK}]\n"
        "    expect: {outcome: done}\n",
        "run name 'r1' is used twice",
    ),
    "run key": (run_entry("    simulater: {seed: 1}\n"), "unknown key(s) simulater"),
    "no expect": (
        f"runs:\n  - name: r1\n    blocks: [{BLOCK}]\n",
        "run 'r1': no expect",
    ),
    "expect key": (run_entry(expect="{outcome: done, qaa: GOOD}"), "qaa"),
    "outcome": (
        run_entry(expect="{outcome: finished}"),
        "outcome: got 'finished'; expected one of done, fault, aborted, error",
    ),
    "qa": (run_entry(expect="{outcome: done, qa: FINE}"), "qa: got 'FINE'"),
    "retakes": (
        run_entry(expect="{outcome: done, retakes: -1}"),
        "retakes: got -1; expected an integer >= 0",
    ),
    "blocks file": (
        "runs:\n  - name: r1\n    blocks: nowhere.yaml\n    expect: {outcome: done}\n",
        "'nowhere.yaml' is not a file",
    ),
    "no blocks": (
        "runs:\n  - name: r1\n    expect: {outcome: done}\n",
        "run 'r1': no blocks",
    ),
    "both": (
        run_entry("    scenario: s.yaml\n    faults: []\n"),
        "either faults or scenario",
    ),
}


@pytest.mark.parametrize("case", sorted(PARSE_ERRORS))
def test_campaign_mistakes_are_one_line(case: str, tmp_path: Path) -> None:
    body, expected = PARSE_ERRORS[case]
    path = campaign(body, tmp_path)
    with pytest.raises(ConfigError) as err:
        load_campaign(path)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(str(path))
    assert expected in str(err.value)


def test_defaults_merge_into_runs(tmp_path: Path) -> None:
    path = campaign(
        "defaults:\n"
        f"  blocks: [{BLOCK}]\n"
        "  simulator: {seed: 4, time_scale: 4000.0}\n"
        "runs:\n"
        "  - name: a\n    simulator: {seed: 5}\n    expect: {outcome: done}\n"
        "  - name: b\n    expect: {outcome: fault, message: jam}\n",
        tmp_path,
    )
    spec = load_campaign(path)
    assert spec.name == "c"
    assert [r.simulator for r in spec.runs] == [
        {"seed": 5, "time_scale": 4000.0},
        {"seed": 4, "time_scale": 4000.0},
    ]
    assert spec.runs[1].expect.message == "jam"
    assert spec.runs[0].expect.qa is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "    faults:\n      - {device: ccd, kind: shutter_stuck_shut}\n",
            "run 'r1', faults, fault #1: unknown fault kind 'shutter_stuck_shut'",
        ),
        (
            "    faults:\n      - {device: dome, kind: no_reply}\n",
            "fault device 'dome' is unknown",
        ),
        ("    simulator: {time_scale: -2.0}\n", "[simulator] time_scale: got -2.0"),
        ("    simulator: {ccd_temp: 160}\n", "unknown key(s) ccd_temp"),
        ("    run: {retake_limit: 1000}\n", "[run] retake_limit: got 1000"),
    ],
)
def test_command_refuses_bad_settings_before_running(
    extra: str, expected: str, tmp_path: Path
) -> None:
    path = campaign(run_entry(extra), tmp_path)
    out = tmp_path / "out"
    done = cli("campaign", str(path), "--out", str(out))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("megara-dark: error: ")
    assert expected in lines[0]
    assert "Traceback" not in done.stderr
    assert not list(out.glob("runs/*/work")), "a run started despite the mistake"


def test_command_refuses_an_invalid_block(tmp_path: Path) -> None:
    bad = BLOCK.replace("nframes: 1", "nframes: 0")
    path = campaign(
        f"runs:\n  - name: r1\n    blocks: [{bad}]\n    expect: {{outcome: done}}\n",
        tmp_path,
    )
    done = cli("campaign", str(path), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "run 'r1'" in lines[0]
    assert "nframes" in lines[0]


EXAMPLES = sorted(
    p
    for p in (Path(__file__).parents[2] / "examples" / "campaigns").glob("*.yaml")
    if not p.name.startswith("blocks-")
)


def test_there_are_example_campaigns() -> None:
    assert {p.name for p in EXAMPLES} >= {"faults.yaml", "temperature_sweep.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_campaigns_are_valid(path: Path, tmp_path: Path) -> None:
    from sequencer.engineering.campaign import prepare  # noqa: PLC0415
    from sequencer.engineering.campaign_spec import check_faults  # noqa: PLC0415

    spec = load_campaign(path)
    check_faults(spec)
    for run in spec.runs:
        blocks, config = prepare(run, tmp_path / run.name)
        assert blocks.is_file()
        assert config.is_file()


def test_driver_tables_merge_with_the_defaults(tmp_path: Path) -> None:
    from sequencer.engineering.campaign import prepare  # noqa: PLC0415

    path = campaign(
        "defaults:\n  ccd: {retries: 5}\n  cover: {reply_timeout_s: 3.0}\n"
        + run_entry("    ccd: {reply_timeout_s: 4.0}\n"),
        tmp_path,
    )
    spec = load_campaign(path).runs[0]
    assert spec.tables == {
        "simulator": {},
        "run": {},
        "ccd": {"retries": 5, "reply_timeout_s": 4.0},
        "cover": {"reply_timeout_s": 3.0},
    }
    _, config = prepare(spec, tmp_path / "r1")
    assert tomllib.loads(config.read_text()) == spec.tables
