"""Opening input files: regular files only, never a read that cannot end.

Every file the reduction reads (raw frames, masters, the reduction YAML, the
QC TOML) is opened here. A path is refused, with one line naming it, when it
is not a regular file: a FIFO would block the reader for ever, ``/dev/zero``
would be read until memory runs out, a directory or a device is no input.
The file is stat'ed first (so that a device is never even opened), then
opened with ``O_NONBLOCK`` (a FIFO swapped in between cannot block the open)
and ``O_NOCTTY``, and checked again with ``fstat`` on the descriptor that is
read: what is checked is what is read.

This module is light (no numpy): the CLI's digest thread uses it before the
reduction's imports are done.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from reduce.errors import InputError

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 16 * 1024 * 1024
"""Largest reduction YAML or QC TOML read, bytes (a block file of ~10^5 frames)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


Identity = tuple[int, int, int, int, int]
"""``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of a file."""


def identity(stat: os.stat_result) -> Identity:
    """The fields that change when a file is replaced or rewritten."""
    return (
        stat.st_dev,
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        stat.st_ctime_ns,
    )


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _open_error(err: OSError, what: str) -> str:
    if err.errno == errno.ENOENT:
        return f"{what} not found"
    if err.errno == errno.ELOOP:
        return f"symbolic link loop; expected a {what} (a regular file)"
    if err.errno == errno.ENOTDIR:
        return f"{what} not found (a folder on its path is a file)"
    if err.errno == errno.ENAMETOOLONG:
        return (
            f"file name too long for the system ({len(str(err.filename or ''))} "
            f"characters); give a shorter path to the {what}"
        )
    return f"cannot open {what}: {err.strerror}"


def _not_regular(source: str, mode: int, what: str) -> InputError:
    return InputError(source, f"is {_kind(mode)}; expected a {what} (a regular file)")


def check_regular(path: str | Path, what: str) -> os.stat_result:
    """The status of ``path`` if it names a regular file (nothing is opened).

    Raises
    ------
    InputError
        If the path does not exist, is a symbolic-link loop, is too long, or
        names a directory, FIFO, device or socket; one line naming it.
    """
    source = str(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise InputError(source, _open_error(err, what)) from None
    except ValueError as err:  # a NUL in the name
        raise InputError(source, f"not a usable file name: {err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(source, info.st_mode, what)
    return info


def open_regular(path: str | Path, what: str) -> tuple[int, os.stat_result]:
    """Open a regular file read-only; its descriptor and ``fstat``.

    Parameters
    ----------
    path
        The file.
    what
        What the file should be (``"frame file"``, ``"master bias"``), for
        messages.

    Returns
    -------
    tuple
        The open descriptor (the caller closes it) and its status.

    Raises
    ------
    InputError
        As :func:`check_regular`, or if the file cannot be opened.
    """
    source = str(path)
    check_regular(path, what)  # a device or FIFO is never opened
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise InputError(source, _open_error(err, what)) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # replaced since the check
        os.close(fd)
        raise _not_regular(source, info.st_mode, what)
    return fd, info


def read_text(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes.

    Raises
    ------
    InputError
        If the file is not a readable regular file, is larger than
        ``limit`` bytes, or is not UTF-8.
    """
    source = str(path)
    fd, info = open_regular(path, what)
    try:
        if info.st_size > limit:
            raise InputError(
                source,
                f"{what} is {info.st_size} bytes, more than the {limit} expected; "
                "is it the right file?",
            )
        data = os.pread(fd, info.st_size, 0)  # what it holds now, at most
    except OSError as err:
        raise InputError(source, f"cannot read {what}: {err.strerror}") from err
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(source, f"not a UTF-8 text file ({err.reason})") from err
