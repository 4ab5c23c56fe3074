"""SIGKILL at a chosen byte of a raw frame or journal record: the crash tests' tool.

The production writers hold no fault hook: this module wraps them from the
outside, in a process of its own, and is started in place of the command::

    python -m tests.killpoints run BLOCKS --config ... (as megara-dark)
    python -m tests.killpoints write-frame PATH       (one test frame)
    python -m tests.killpoints journal PATH           (a run_started record,
                                                       then frame_written x 3)

with the repository on ``PYTHONPATH``. The points are read from the
environment:

* ``MEGARA_DARK_TEST_KILL_FITS=NAME:BYTES``: the write of raw frame ``NAME``
  dies after ``BYTES`` bytes of its partial file (synced first);
* ``MEGARA_DARK_TEST_KILL_JOURNAL=EVENT:N:BYTES``: the ``N``-th ``EVENT``
  record of the run journal is torn after ``BYTES`` bytes (synced), and the
  process dies.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

FITS_ENV = "MEGARA_DARK_TEST_KILL_FITS"
JOURNAL_ENV = "MEGARA_DARK_TEST_KILL_JOURNAL"
#: The repository, for the ``PYTHONPATH`` of a process started with ``-m``.
ROOT = Path(__file__).resolve().parent.parent


def command(*args: str) -> list[str]:
    """The argv that runs ``tests.killpoints ARGS`` (see :func:`environment`)."""
    return [sys.executable, "-m", "tests.killpoints", *args]


def environment(points: Mapping[str, str]) -> dict[str, str]:
    """``os.environ`` with ``points`` and the repository on ``PYTHONPATH``."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **points}


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _KillAfter:
    """A stream that SIGKILLs this process after ``limit`` bytes."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._written = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        room = self._limit - self._written
        if len(view) >= room:
            self._stream.write(view[: max(room, 0)])
            self._stream.flush()
            os.fsync(self._stream.fileno())
            _die()
        self._written += len(view)
        return self._stream.write(view)

    def flush(self) -> None:
        self._stream.flush()

    def tell(self) -> int:
        return self._written


def kill_in_frame(spec: str) -> None:
    """Wrap the raw-frame writer's stream for the frame ``spec`` names."""
    from reduce.fits import writer  # noqa: PLC0415
    from reduce.rawframe import partial_name  # noqa: PLC0415

    name, _, size = spec.rpartition(":")
    target, limit = partial_name(name), int(size)
    write_image = writer.write_image

    @functools.wraps(write_image)
    def dying(stream: Any, *args: Any, **kwargs: Any) -> int:
        opened = os.readlink(f"/proc/self/fd/{stream.fileno()}")
        if Path(opened).name == target:
            stream = _KillAfter(stream, limit)
        return write_image(stream, *args, **kwargs)

    writer.write_image = dying


def kill_in_journal(spec: str) -> None:
    """Tear the journal record ``spec`` names (``EVENT:N:BYTES``)."""
    from sequencer.journal import Journal  # noqa: PLC0415

    event, count, size = spec.rsplit(":", 2)
    seen = 0
    write: Callable[[Journal, str, bytes], None] = Journal._write

    def tearing(self: Journal, what: str, data: bytes) -> None:
        nonlocal seen
        if what == event:
            seen += 1
            if seen == int(count) and int(size) < len(data):
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                os.write(fd, data[: int(size)])
                os.fsync(fd)
                _die()
        write(self, what, data)
        if what == event and seen == int(count):
            _die()  # the whole record made it; die before going on

    Journal._write = tearing  # type: ignore[method-assign]


def install(environ: Mapping[str, str]) -> None:
    """Install the kill points ``environ`` names (none: nothing changes)."""
    if FITS_ENV in environ:
        kill_in_frame(environ[FITS_ENV])
    if JOURNAL_ENV in environ:
        kill_in_journal(environ[JOURNAL_ENV])


def _write_frame(path: str) -> int:
    from sequencer.rawfits import FrameWriteError, write_raw_frame  # noqa: PLC0415
    from tests.unit.sequencer.test_rawfits import make_meta, pixels  # noqa: PLC0415

    try:
        write_raw_frame(Path(path), pixels(), make_meta())
    except FrameWriteError as err:
        print(f"FrameWriteError: {err}")
        return 3
    return 0


def _journal(path: str) -> int:
    from sequencer.journal import Journal  # noqa: PLC0415

    journal = Journal(Path(path))
    journal.append("run_started", blocks=["b"])
    for attempt in (1, 2, 3):
        journal.append("frame_written", block="b", attempt=attempt, valid=True)
    return 0


def main(argv: Sequence[str]) -> int:
    from reduce.runtime import configure_process  # noqa: PLC0415

    configure_process()  # as megara-dark does, before numpy is imported
    install(os.environ)
    what, *rest = argv
    if what == "write-frame":
        return _write_frame(*rest)
    if what == "journal":
        return _journal(*rest)
    from sequencer.cli import main as megara_dark  # noqa: PLC0415

    sys.argv = ["megara-dark", *argv]
    megara_dark()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
