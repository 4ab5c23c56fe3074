"""Writes the file system refuses: no space, a file-size limit, read-only folders.

Each test makes a real ``megara-dark run`` (built-in simulators) hit one fault
and checks that the run ends with one clear line naming the file and what to
do, a non-zero exit and no traceback; that no partial file looks whole and the
journal reads to its last record; and that ``--resume``, once the cause is
gone, finishes the run with exactly N frames and the master dark of an
uninterrupted run.

How the faults are made, without special privileges where possible:

* file-size limit: ``RLIMIT_FSIZE`` set in the run's process before exec
  (Python ignores SIGXFSZ, so the write fails with EFBIG);
* no space: a 48 MiB tmpfs holding the work folder, where the first frame
  fits and the next frame, or the reduction's spool, does not (ENOSPC); it is
  grown to 1500 MiB before the resume. Mounting needs root: without it the
  test makes the same failure with ``RLIMIT_FSIZE`` and prints which it used;
* read-only folder: ``chmod a-w``. Root ignores permission bits, so when the
  tests run as root the run is started without CAP_DAC_OVERRIDE,
  CAP_DAC_READ_SEARCH and CAP_FOWNER (dropped from its bounding set before
  exec, ``prctl(PR_CAPBSET_DROP)``), and the permission bits bind it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sequencer.journal import read_records, replay
from tests.reliability.conftest import Reference
from tests.reliability.harness import (
    BLOCK,
    NFRAMES,
    Preexec,
    RunProcess,
    Setup,
    check_after_crash,
    check_complete,
    run_to_end,
)

pytestmark = pytest.mark.e2e

_PR_CAPBSET_DROP = 24  # <linux/prctl.h>
_DAC_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def limit_file_size(limit: int) -> Preexec:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def bound_by_permissions() -> None:
    """Make permission bits apply to this process (and what it execs), even as root."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _DAC_CAPS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")


def read_only(path: Path) -> None:
    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def writable(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)


def assert_one_line_failure(run: RunProcess, *needles: str | tuple[str, ...]) -> str:
    """Exit 1, no traceback, and a stderr line holding every needle; return it.

    A tuple needle is satisfied by any one of its strings.
    """
    assert run.proc.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]

    def holds(line: str, needle: str | tuple[str, ...]) -> bool:
        options = (needle,) if isinstance(needle, str) else needle
        return any(option in line for option in options)

    lines = [
        line
        for line in run.stderr.splitlines()
        if all(holds(line, needle) for needle in needles)
    ]
    assert lines, f"no line with {needles} in:\n{run.stderr[-3000:]}"
    return lines[0]


def assert_journal_ends_with_fault(work: Path, name: str) -> None:
    records, torn = read_records(work / "run.journal")
    assert torn == b""
    assert records[-1]["event"] == "fault"
    assert name in records[-1]["error"]
    replay(records)


def assert_resumes(setup: Setup, work: Path, reference: Reference) -> None:
    again = run_to_end(setup, work, resume=True)
    assert again.proc.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    assert check_complete(work, reference.master) == list(range(1, NFRAMES + 1))


def test_file_size_limit(reference: Reference, tmp_path: Path) -> None:
    setup, work = reference.setup, tmp_path / "work"
    limit = reference.frame_bytes // 2
    run = run_to_end(setup, work, preexec=limit_file_size(limit))
    line = assert_one_line_failure(run, f"{BLOCK}_0001.fits", "cannot write the frame")
    assert "--resume" in line
    crash = check_after_crash(work)
    assert crash.frames == []
    assert crash.partials == []
    assert_journal_ends_with_fault(work, f"{BLOCK}_0001.fits")
    assert_resumes(setup, work, reference)


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[bool]:
    """A tmpfs of ``size`` on ``folder`` if this process may mount one."""
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    try:
        mounted = subprocess.run(mount, capture_output=True, check=False).returncode
    except OSError:
        mounted = 1
    try:
        yield mounted == 0
    finally:
        if mounted == 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill_disk(folder: Path, leave: int) -> Path:
    """A file that takes all but ``leave`` bytes of the disk under ``folder``."""
    filler = folder / "filler"
    chunk = b"\0" * (4 << 20)
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            info = os.statvfs(folder)
            if info.f_bavail * info.f_frsize <= leave + len(chunk):
                break
            out.write(chunk)
            out.flush()
    return filler


def test_a_run_that_cannot_fit_is_refused_before_any_exposure(
    reference: Reference, tmp_path: Path
) -> None:
    setup = reference.setup
    with small_tmpfs(tmp_path / "disk", "48m") as on_tmpfs:
        if not on_tmpfs:
            pytest.skip("needs a small tmpfs (mount needs root)")
        work = tmp_path / "disk" / "work"
        run = run_to_end(setup, work)
        assert run.proc.returncode == 2, run.stderr[-2000:]
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1, run.stderr
        assert "MiB free; the run needs about" in lines[0]
        assert not run.events, "the run started although it cannot fit"
        assert not work.exists() or not list((work / "data").glob("*.fits"))


def test_no_space_left(reference: Reference, tmp_path: Path) -> None:
    setup = reference.setup
    with small_tmpfs(tmp_path / "disk", "1200m") as on_tmpfs:
        work = tmp_path / "disk" / "work"
        full: tuple[str, ...]
        filler = None
        if on_tmpfs:
            # The run fits when it starts (the pre-flight check passes); then
            # another program takes the disk, leaving room for about one
            # frame: a later frame, or the reduction's spool, finds it full.
            run = RunProcess.start(setup.argv(work), cwd=setup.folder)
            written = run.wait_for(lambda e: e.get("event") == "frame_written")
            assert written is not None, run.stderr[-2000:]
            filler = fill_disk(tmp_path / "disk", 40 << 20)
            run.finish()
            full = ("No space left on device", "disk is full", "disk full")
        else:  # no mount without root: the same failure from a size limit
            run = run_to_end(setup, work, preexec=limit_file_size(1 << 20))
            full = ("cannot write the frame",)
        line = assert_one_line_failure(run, f"{BLOCK}", full)
        print(f"no space ({'tmpfs' if on_tmpfs else 'RLIMIT_FSIZE'}): {line}")
        # What to do: resume (our writers), or at least the question to ask
        # (the reduction's scratch file: "is the disk full?").
        assert "--resume" in line or "is the disk full?" in line
        crash = check_after_crash(work)
        assert crash.partials == []
        assert len(crash.frames) < NFRAMES
        assert_journal_ends_with_fault(work, BLOCK)
        if filler is not None:
            filler.unlink()
        assert_resumes(setup, work, reference)


def test_data_folder_made_read_only_mid_run(
    reference: Reference, tmp_path: Path
) -> None:
    setup, work = reference.setup, tmp_path / "work"
    run = RunProcess.start(
        setup.argv(work), cwd=setup.folder, preexec=bound_by_permissions
    )
    written = run.wait_for(
        lambda e: e.get("event") == "frame_written" and e.get("frame") == 1
    )
    assert written is not None, "the run ended before its first frame"
    read_only(work / "data")
    try:
        run.finish()
        assert_one_line_failure(run, f"{BLOCK}_0002.fits", "Permission denied")
    finally:
        writable(work / "data")
    crash = check_after_crash(work)
    assert crash.frames == [f"{BLOCK}_0001.fits"]
    assert crash.partials == []
    assert_journal_ends_with_fault(work, f"{BLOCK}_0002.fits")
    assert_resumes(setup, work, reference)


def test_work_folder_read_only_at_resume(reference: Reference, tmp_path: Path) -> None:
    setup, work = reference.setup, tmp_path / "work"
    run = RunProcess.start(setup.argv(work), cwd=setup.folder)
    written = run.wait_for(
        lambda e: e.get("event") == "frame_written" and e.get("frame") == 1
    )
    assert written is not None, "the run ended before its first frame"
    run.kill()
    before = (work / "run.journal").read_bytes()
    read_only(work)
    try:
        refused = run_to_end(setup, work, resume=True, preexec=bound_by_permissions)
    finally:
        writable(work)
    line = assert_one_line_failure(refused, "Permission denied")
    assert str(work) in line
    assert "--resume" in line
    records, torn = read_records(work / "run.journal")
    replay(records)
    assert torn == b""
    assert (work / "run.journal").read_bytes().startswith(before)
    assert_resumes(setup, work, reference)
