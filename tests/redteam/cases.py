"""The red-team case tables: what a case is, how it is run and how it is judged.

A :class:`Case` is one hostile input and the run of the real command on it;
its ``check`` returns the problems seen (an empty list: handled). The
tables live in :mod:`tests.redteam.hostile_fits` (category A: hostile FITS
into ``megara-dark reduce``) and :mod:`tests.redteam.hostile_inputs`
(category B: hostile blocks and configurations into ``megara-dark run`` and
``megara-dark reduce``). The tests (``tests/redteam/test_*.py``) run the
tables; ``benchmarks/redteam.py`` runs those tests.

Every refusal of bad input must be judged the same way (:func:`judge`): the
documented exit status (2), exactly one line on stderr that names the file
or key and says what was wrong, no traceback, and no hang (a real
subprocess, killed with its process group after a time limit).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from sequencer.simlaunch import megara_dark

#: Seconds a command may take before it counts as hung (refusals take ~1 s).
TIME_LIMIT_S = 30.0
#: Address space a command may use (bytes): reading /dev/zero into memory
#: fails with MemoryError (a traceback, judged) instead of exhausting the host.
MEMORY_LIMIT = 8 << 30
#: The documented exit status of bad input.
EXIT_INPUT = 2


@dataclass(frozen=True)
class Outcome:
    """How a command ended: ``status`` None if it was killed as hung."""

    status: int | None
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Case:
    """One hostile input: ``check(world)`` runs it, returns the problems."""

    category: str
    name: str
    check: Callable[[Any], list[str]]
    #: Why it is known to fail, and where the fix belongs ("": it must pass).
    known: str = ""


def _short(text: str, limit: int = 160) -> str:
    text = " | ".join(text.strip().splitlines()) or "(nothing)"
    return (
        text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"
    )


def judge(
    outcome: Outcome,
    *,
    names: Sequence[str],
    words: Sequence[str] = (),
    status: int = EXIT_INPUT,
) -> list[str]:
    """The problems of a refusal: status, one stderr line naming ``names``
    and holding one of ``words`` (any, case-insensitive), no traceback."""
    if outcome.status is None:
        return [f"hung: no exit in {TIME_LIMIT_S:.0f} s ({_short(outcome.stderr)})"]
    problems = []
    if outcome.status != status:
        problems.append(f"exit status {outcome.status}, expected {status}")
    if "Traceback" in outcome.stderr + outcome.stdout:
        problems.append(f"traceback: {_short(outcome.stderr.splitlines()[-1])}")
    lines = outcome.stderr.strip().splitlines()
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected 1")
    missing = [n for n in names if n not in outcome.stderr]
    if missing:
        problems.append(f"stderr does not name {missing}")
    said = outcome.stderr.lower()
    if words and not any(w.lower() in said for w in words):
        problems.append(f"stderr says none of {list(words)}")
    if problems:
        problems.append(f"stderr: {_short(outcome.stderr)}")
    return problems


def run_command(args: Sequence[str], *, cwd: Path | None = None) -> Outcome:
    """``megara-dark ARGS`` as a real process (see :func:`run_process`)."""
    return run_process([*megara_dark(), *args], cwd=cwd)


def run_process(argv: Sequence[str], *, cwd: Path | None = None) -> Outcome:
    """``argv`` as a real process in its own process group; killed with its
    group (simulators included) after :data:`TIME_LIMIT_S`."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    # Set from here, not in the child before exec (unsafe with threads); the
    # interpreter takes far longer to start than this takes.
    with contextlib.suppress(ProcessLookupError):
        resource.prlimit(proc.pid, resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        out, err = proc.communicate(timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Outcome(None, _text(out), _text(err))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # no child left behind
    return Outcome(proc.returncode, _text(out), _text(err))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def run_in_process(args: Sequence[str]) -> Outcome:
    """``megara-dark ARGS`` through its entry point, in this process.

    The same ``main`` as the installed command (its one-line errors and
    exit statuses), with stdout and stderr captured; an exception escaping
    it is appended to stderr as the traceback it would print.
    """
    from sequencer.cli import main  # noqa: PLC0415

    runner = CliRunner()
    saved = sys.argv
    status: int | None = 0
    trace = ""
    with runner.isolation() as (out, err, _):
        sys.argv = ["megara-dark", *args]
        try:
            main()
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
        except BaseException as exc:
            status, trace = 1, "".join(traceback.format_exception(exc))
        finally:
            sys.argv = saved
        stdout, stderr = out.getvalue(), err.getvalue()
    return Outcome(status, _text(stdout), _text(stderr) + trace)


def fifo_opened(path: Path) -> bool:
    """Whether some process has ``path`` (a FIFO) open for reading now.

    A reader blocked in ``open`` counts: a non-blocking open for writing
    succeeds then (and releases it, with end of file at once).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False  # ENXIO: no reader
    os.close(fd)
    return True


def fifos_opened(folder: Path) -> list[str]:
    """A problem for each FIFO in ``folder`` that something opened to read."""
    return [
        f"{path.name}: the FIFO was opened for reading (it must be refused unopened)"
        for path in sorted(folder.iterdir())
        if path.is_fifo() and fifo_opened(path)
    ]


def files_under(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder``: relative name -> (size, mtime ns, inode)."""
    if not os.path.isdir(folder):  # False for a path too long, not an error
        return {}
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            info = path.lstat()
            found[str(path.relative_to(folder))] = (
                info.st_size,
                info.st_mtime_ns,
                info.st_ino,
            )
    return found


def changes(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> list[str]:
    """What differs between two :func:`files_under` snapshots, one line."""
    added = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    if not (added or gone or changed):
        return []
    return [
        f"files written or changed: added {added}, removed {gone}, changed {changed}"
    ]


_SCRATCH = itertools.count(1)


@contextlib.contextmanager
def scratch(parent: Path, name: str) -> Iterator[Path]:
    """A fresh folder under ``parent`` for one case, removed afterwards."""
    import shutil  # noqa: PLC0415

    # Never the same name twice: a thread a case left behind must not meet
    # the next case's files under its old names.
    folder = parent / f"{name}-{next(_SCRATCH)}"
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def long_path(folder: Path, name: str, length: int = 5000) -> Path:
    """A path of about ``length`` characters under ``folder`` ending in ``name``."""
    parts, total = [], len(str(folder)) + len(name)
    while total < length:
        parts.append("d" * 200)
        total += 201
    return folder.joinpath(*parts, name)
