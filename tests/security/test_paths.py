"""Paths in observing and reduction blocks cannot write outside the work folder.

Block ids name files and folders (``data/<id>_<attempt>.fits``,
``obsid<id>_results``): they are restricted to 1-64 letters, digits and
``_.-`` (``+`` too for reduction blocks), never starting with a dot, and
anything else is refused before any hardware moves or any file is written.
``master_bias`` and ``frames:`` entries are inputs only (read, never
written); text with NUL or control characters is refused with a clear error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from reduce import blocks as reduce_blocks
from reduce.errors import InputError
from sequencer.blocks import parse_blocks
from sequencer.simlaunch import megara_dark

HOSTILE_IDS = [
    "../../evil",
    "..",
    ".hidden",
    "/etc/evil",
    "a/b",
    "a\\b",
    "a\x00b",
    "a\nb",
    "x" * 65,
    "",
]


def observing_block(block_id: str, **extra: str) -> str:
    lines = {
        "id": f'"{block_id}"'.replace("\x00", "\\0").replace("\n", "\\n"),
        "instrument": "MEGARA",
        "mode": "MegaraBiasImage",
        "exptime": "0.0",
        "nframes": "1",
        **extra,
    }
    return "".join(f"{k}: {v}\n" for k, v in lines.items())


@pytest.mark.parametrize("block_id", [*HOSTILE_IDS, "-starts-with-dash"])
def test_observing_block_ids_are_file_safe(block_id: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"key 'id'.*expected 1-64 letters"):
        parse_blocks(observing_block(block_id), source="ob.yaml", base=tmp_path)


@pytest.mark.parametrize("block_id", HOSTILE_IDS)
def test_reduction_block_ids_are_file_safe(block_id: str, tmp_path: Path) -> None:
    doc = {"id": block_id, "instrument": "MEGARA", "mode": "MegaraBiasImage"}
    with pytest.raises(InputError, match=r"key 'id'.*not starting with '\.'"):
        reduce_blocks.parse_block({**doc, "frames": ["a.fits"]}, "r.yaml#0")


@pytest.mark.parametrize("name", ["a\x00b.fits", "a\nb.fits", "\x1b[2J.fits", ""])
def test_frame_and_bias_names_with_control_characters_are_refused(
    name: str,
) -> None:
    base = {"id": "d1", "instrument": "MEGARA", "mode": "MegaraDarkImage"}
    with pytest.raises(InputError, match="key 'frames' must be a list of file names"):
        reduce_blocks.parse_block({**base, "frames": [name]}, "r.yaml#0")
    bias = {**base, "frames": ["a.fits"], "requirements": {"master_bias": name}}
    with pytest.raises(InputError, match="master_bias"):
        reduce_blocks.parse_block(bias, "r.yaml#0")


def test_master_bias_with_a_nul_byte_is_refused(tmp_path: Path) -> None:
    text = observing_block("d1", mode="MegaraDarkImage", exptime="10.0")
    text += 'requirements: {master_bias: "bias\\0.fits"}\n'
    with pytest.raises(ConfigError, match=r"master_bias.*holds no NUL"):
        parse_blocks(text, source="ob.yaml", base=tmp_path)


def tree(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, "no message"
    return lines[-1]


def test_run_refuses_a_traversing_id_before_anything_happens(tmp_path: Path) -> None:
    """``megara-dark run`` with ``id: ../../evil``: one line, nothing written."""
    outside = tmp_path / "outside"
    work = outside / "a" / "b" / "work"
    work.mkdir(parents=True)
    blocks = tmp_path / "evil.yaml"
    blocks.write_text(observing_block("../../evil"))
    before = tree(tmp_path)
    done = subprocess.run(
        [*megara_dark(), "run", str(blocks), "--workdir", str(work)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    message = one_line_failure(done)
    assert "'id'" in message
    assert "../../evil" in message
    assert tree(tmp_path) == before


def test_reduce_refuses_traversal_and_writes_nothing_outside(tmp_path: Path) -> None:
    """``megara-dark reduce`` with hostile ids and frames writes nowhere else."""
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    data.mkdir()
    absolute = tmp_path / "elsewhere.fits"
    cases = {
        "id": 'id: "../../evil"\nframes: [a.fits]',
        "frames": f'id: ok\nframes: ["../../evil.fits", "{absolute}"]',
    }
    for what, body in cases.items():
        blocks = tmp_path / f"{what}.yaml"
        blocks.write_text(f"instrument: MEGARA\nmode: MegaraBiasImage\n{body}\n")
        before = tree(tmp_path)
        done = subprocess.run(
            [
                *megara_dark(),
                "reduce",
                str(blocks),
                "--datadir",
                str(data),
                "--workdir",
                str(work),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        message = one_line_failure(done)
        assert ("'id'" in message) if what == "id" else ("not found" in message)
        new = tree(tmp_path) - before
        assert all(work in path.parents for path in new), new
