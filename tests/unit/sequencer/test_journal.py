"""The run journal: append, read back, replay, resume after a crash."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from drivers.errors import ConfigError
from reduce.geometry import RAW_SHAPE
from reduce.rawframe import partial_name
from sequencer.journal import (
    Journal,
    JournalError,
    read_records,
    replay,
)
from sequencer.rawfits import file_name, write_raw_frame
from sequencer.recovery import exposures_done, orphan_frames, resume_block
from tests import killpoints
from tests.unit.sequencer.test_rawfits import make_meta


def test_append_and_read_back(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "run.journal")
    first = journal.append("run_started", blocks=["b1"], version="0.1")
    journal.append("block_started", block="b1")
    records = journal.records()
    assert [r["event"] for r in records] == ["run_started", "block_started"]
    assert [r["seq"] for r in records] == [1, 2]
    assert records[0] == first
    assert records[0]["blocks"] == ["b1"]
    stamp = datetime.fromisoformat(records[0]["time"])
    offset = stamp.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    lines = (tmp_path / "run.journal").read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1])["block"] == "b1"


def test_each_record_is_one_write_and_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "run.journal")
    calls: list[str] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: bytes) -> int:
        calls.append("write")
        assert data.endswith(b"\n")
        assert data.count(b"\n") == 1
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr("sequencer.journal.os.write", write)
    monkeypatch.setattr("sequencer.journal.os.fsync", fsync)
    journal.append("block_started", block="b1")
    assert calls == ["write", "fsync"]


def test_sequence_continues_after_reopen(tmp_path: Path) -> None:
    Journal(tmp_path / "j").append("run_started", blocks=[])
    again = Journal(tmp_path / "j")
    assert again.append("run_done")["seq"] == 2


def test_reserved_and_non_json_fields(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    with pytest.raises(ConfigError, match="reserved"):
        journal.append("x", seq=3)
    with pytest.raises(ConfigError, match="not JSON"):
        journal.append("x", value=object())
    with pytest.raises(ConfigError, match="not JSON"):
        journal.append("x", value=float("nan"))
    assert journal.records() == []


def test_torn_last_line_is_ignored_then_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append("block_started", block="b1")
    with path.open("ab") as stream:
        stream.write(b'{"seq": 2, "time": "2026-11-28T13:40:00+00:00", "ev')
    with caplog.at_level(logging.WARNING):
        assert [r["seq"] for r in journal.records()] == [1]
    assert "torn final line" in caplog.text
    with caplog.at_level(logging.WARNING):
        reopened = Journal(path)
    assert "cutting off a torn final record" in caplog.text
    reopened.append("block_done", block="b1")
    assert [r["event"] for r in reopened.records()] == ["block_started", "block_done"]
    assert [r["seq"] for r in reopened.records()] == [1, 2]


def test_bad_middle_line_raises_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    journal.append("a")
    with path.open("ab") as stream:
        stream.write(b"garbage\n")
    journal2_line = json.dumps({"seq": 3, "time": "t", "event": "b"}) + "\n"
    with path.open("a") as stream:
        stream.write(journal2_line)
    with pytest.raises(ConfigError, match="line 2"):
        journal.records()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"seq": 5, "time": "t", "event": "a"}', "seq 5, expected 2"),
        ('["not", "an", "object"]', "has no event"),
        ('{"seq": 2, "time": "t"}', "has no event"),
    ],
)
def test_bad_records(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "j"
    Journal(path).append("a")
    with path.open("a") as stream:
        stream.write(line + "\n")
    with pytest.raises(ConfigError, match=match):
        Journal(path)


def run_records(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "j")
    journal.append("run_started", blocks=["bias", "dark"], version="0.1")
    journal.append("block_started", block="bias")
    for attempt in (1, 2):
        journal.append("frame_started", block="bias", attempt=attempt)
        journal.append(
            "frame_written",
            block="bias",
            attempt=attempt,
            file=file_name("bias", attempt),
            valid=True,
            reason="",
            sha256="0" * 64,
        )
    journal.append("block_done", block="bias")
    journal.append("reduction_done", block="bias", qa="GOOD")
    journal.append("block_started", block="dark")
    journal.append("frame_started", block="dark", attempt=1)
    journal.append(
        "frame_written",
        block="dark",
        attempt=1,
        file="dark_0001.fits",
        valid=False,
        reason="shutter OPEN",
    )
    journal.append("frame_started", block="dark", attempt=2)
    journal.append("frame_invalid", block="dark", attempt=2, reason="readout lost")
    journal.append("frame_started", block="dark", attempt=3)
    journal.append(
        "frame_written", block="dark", attempt=3, file="dark_0003.fits", valid=True
    )
    journal.append("frame_started", block="dark", attempt=4)
    return journal


def test_replay(tmp_path: Path) -> None:
    state = replay(run_records(tmp_path).records())
    assert state.started
    assert not state.done
    assert state.planned == ["bias", "dark"]
    bias, dark = state.block("bias"), state.block("dark")
    assert bias.valid_files == ["bias_0001.fits", "bias_0002.fits"]
    assert bias.done
    assert bias.reduced
    assert bias.qa == "GOOD"
    assert bias.retakes == 0
    assert dark.valid_files == ["dark_0003.fits"]
    assert dark.invalid_files == ["dark_0001.fits"]
    assert dark.failed_attempts == [2]
    assert dark.retakes == 2
    assert not dark.done
    assert dark.attempts == 4
    # attempt 4 was started and never finished: it is not reused
    assert dark.expected_next_attempt == 5
    assert dark.next_frame_index == 2
    assert state.block("never").expected_next_attempt == 1


def test_replay_counts_a_repeated_record_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for _ in range(2):
        journal.append(
            "frame_written", block="b", attempt=1, file="b_0001.fits", valid=True
        )
    assert replay(journal.records()).block("b").valid_files == ["b_0001.fits"]


def test_replay_of_faults_and_run_done(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append("fault", block="b", error="cover jammed")
    journal.append("run_done")
    state = replay(journal.records())
    assert state.faults == ["cover jammed"]
    assert state.done
    assert state.last_seq == 2


def write_frame(folder: Path, block: str, attempt: int, valid: bool = True) -> Path:
    data = np.full(RAW_SHAPE, 1000, np.uint16)
    meta = make_meta(
        block_id=block,
        attempt=attempt,
        frame_index=1,
        valid=valid,
        invalid_reason=None if valid else "light leak",
        uuid=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{block}/{attempt}")),
    )
    return write_raw_frame(folder / file_name(block, attempt), data, meta)


def test_resume_adopts_an_unjournaled_frame(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    datadir.mkdir()
    journal = Journal(tmp_path / "j")
    journal.append("block_started", block="d")
    journal.append("frame_started", block="d", attempt=1)
    write_frame(datadir, "d", 1)
    journal.append(
        "frame_written", block="d", attempt=1, file="d_0001.fits", valid=True
    )
    journal.append("frame_started", block="d", attempt=2)
    write_frame(datadir, "d", 2, valid=False)  # crash before frame_written
    write_frame(datadir, "dd", 1)  # another block's frame: left alone
    (datadir / partial_name("d_0003.fits")).write_bytes(b"half a frame")
    state = replay(journal.records())
    assert [p.name for p in orphan_frames(state, "d", datadir)] == ["d_0002.fits"]

    block = resume_block(journal, state, "d", datadir)
    assert block.valid_files == ["d_0001.fits"]
    assert block.invalid_files == ["d_0002.fits"]
    assert block.expected_next_attempt == 3
    assert sorted(p.name for p in datadir.iterdir()) == [
        "d_0001.fits",
        "d_0002.fits",
        "dd_0001.fits",
    ]
    adopted = journal.records()[-1]
    assert adopted["event"] == "frame_adopted"
    assert adopted["valid"] is False
    assert adopted["reason"] == "light leak"
    # a second replay of the journal alone gives the same answer
    again = replay(journal.records()).block("d")
    assert again.invalid_files == ["d_0002.fits"]
    assert orphan_frames(replay(journal.records()), "d", datadir) == []


def test_resume_moves_a_damaged_frame_aside(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    datadir.mkdir()
    journal = Journal(tmp_path / "j")
    path = write_frame(datadir, "d", 1)
    path.write_bytes(path.read_bytes()[:100_000])
    state = replay(journal.records())
    block = resume_block(journal, state, "d", datadir)
    assert block.valid_files == []
    assert block.discarded_files == ["d_0001.fits"]
    assert block.expected_next_attempt == 2
    assert [p.name for p in datadir.iterdir()] == ["d_0001.fits.damaged"]
    record = journal.records()[-1]
    assert record["event"] == "frame_discarded"
    assert record["moved_to"] == "d_0001.fits.damaged"


# -- failures and the fault-injection hook -------------------------------------


def test_short_append_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.journal"
    journal = Journal(path)
    journal.append("block_started", block="b1")
    before = path.read_bytes()
    real_write = os.write

    def half(fd: int, data: bytes) -> int:  # what a full disk does to a write
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr("sequencer.journal.os.write", half)
    with pytest.raises(JournalError, match=r"cannot append a 'block_done' record"):
        journal.append("block_done", block="b1")
    assert path.read_bytes() == before  # nothing half-written is left
    monkeypatch.undo()
    assert journal.append("block_done", block="b1")["seq"] == 2
    assert [r["seq"] for r in Journal(path).records()] == [1, 2]


def test_refused_fsync_names_the_journal_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.journal"
    journal = Journal(path)
    journal.append("run_started", blocks=[])

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("sequencer.journal.os.fsync", full)
    with pytest.raises(JournalError) as caught:
        journal.append("block_started", block="b1")
    message = str(caught.value)
    assert str(path) in message
    assert "No space left on device" in message
    assert f"megara-dark run --resume {tmp_path}" in message
    assert "\n" not in message
    monkeypatch.undo()
    assert [r["event"] for r in Journal(path).records()] == ["run_started"]


def test_unwritable_folder_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot create or repair"):
        Journal(tmp_path / "missing" / "run.journal")


@pytest.mark.parametrize("size", [0, 20, 10_000])
def test_a_record_torn_by_a_kill_is_dropped_on_reopening(
    tmp_path: Path, size: int
) -> None:
    path = tmp_path / "run.journal"
    env = killpoints.environment({killpoints.JOURNAL_ENV: f"frame_written:2:{size}"})
    done = subprocess.run(
        killpoints.command("journal", str(path)), env=env, check=False
    )
    assert done.returncode == -signal.SIGKILL
    records, torn = read_records(path)
    if size < 100:  # the record is longer: torn after `size` bytes
        assert [r["attempt"] for r in records[1:]] == [1]
        assert len(torn) == size
        assert path.read_bytes().endswith(b"\n" + torn)
    else:  # the whole record made it; the process died before going on
        assert [r["attempt"] for r in records[1:]] == [1, 2]
        assert torn == b""
    reopened = Journal(path)
    assert read_records(path)[1] == b""
    assert reopened.append("run_done")["seq"] == len(records) + 1


def test_read_records_does_not_repair(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path).append("run_started", blocks=[])
    with path.open("ab") as stream:
        stream.write(b'{"seq": 2, "ev')
    before = path.read_bytes()
    records, torn = read_records(path)
    assert [r["seq"] for r in records] == [1]
    assert torn == b'{"seq": 2, "ev'
    assert path.read_bytes() == before


def test_exposures_done_counts_every_finished_attempt(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    datadir.mkdir()
    journal = Journal(tmp_path / "j")
    journal.append("frame_written", block="bias", attempt=1, valid=True)
    journal.append("frame_written", block="bias", attempt=2, valid=True)
    journal.append("frame_written", block="d", attempt=1, valid=False)
    journal.append("frame_invalid", block="d", attempt=2, reason="readout lost")
    journal.append("frame_discarded", block="d", attempt=3, file="d_0003.fits")
    journal.append("frame_started", block="d", attempt=5)  # cut short: not done
    for name in ("bias_0001.fits", "d_0001.fits", "d_0003.fits.damaged"):
        (datadir / name).write_bytes(b"")
    (datadir / "d_0004.fits").write_bytes(b"")  # renamed, then the crash
    (datadir / partial_name("d_0005.fits")).write_bytes(b"half")
    state = replay(journal.records())
    # bias 1, 2; d 1 (invalid), 2 (failed), 3 (discarded), 4 (on disk)
    assert exposures_done(state, datadir) == 6
    assert exposures_done(replay([]), tmp_path / "nowhere") == 0
