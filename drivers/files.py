"""Reading the files a user names: observing blocks, configurations, scenarios.

A path typed by a user can name anything: a named pipe (FIFO) whose ``open``
blocks until a writer comes and whose read never ends, a terminal or other
device, a folder, a symbolic-link loop, a name longer than the system allows.
Each of those is the user's mistake, reported as one :class:`ConfigError`
line (exit status 2), never a hang or a traceback. The file is opened with
``O_NONBLOCK`` (so a FIFO cannot block the open) and checked with ``fstat``
on the open descriptor, so that what is read is the regular file checked.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from drivers.errors import ConfigError, shown_path

log = logging.getLogger(__name__)

#: Largest input file read (bytes). Observing blocks, configurations,
#: scenarios and campaigns are a few kilobytes.
MAX_USER_FILE_BYTES = 4 * 1024 * 1024

#: What to do about each ``errno`` a user-named path can give.
_HINTS = {
    errno.ENOENT: "check the name and the folder it is looked for in",
    errno.ENAMETOOLONG: "the name or one of its folders is longer than the system "
    "allows; give a shorter path",
    errno.ELOOP: "its symbolic links point at each other; fix or remove them",
    errno.ENOTDIR: "a part of the path before the file name is not a folder",
    errno.EACCES: "check the file's permissions",
    errno.EPERM: "check the file's permissions",
}

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def path_error(path: object, what: str, err: OSError) -> ConfigError:
    """The one-line error for a user-named ``path`` the system refused."""
    hint = _HINTS.get(err.errno or 0, "check the path")
    if err.errno == errno.ENOENT:
        return ConfigError(f"{what} {shown_path(path)}: file does not exist; {hint}")
    reason = err.strerror or type(err).__name__
    return ConfigError(f"{what} {shown_path(path)}: cannot read ({reason}); {hint}")


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(path: object, what: str, mode: int) -> ConfigError:
    return ConfigError(
        f"{what} {shown_path(path)}: is {_kind(mode)}, not a regular file; "
        f"give the path of a {what} file"
    )


def check_user_file(path: Path, what: str) -> None:
    """Raise ConfigError unless ``path`` names an existing regular file.

    For a file read later (a master bias): nothing is opened here.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise path_error(path, what, err) from None
    except ValueError:  # a NUL in the name
        raise ConfigError(
            f"{what} {shown_path(path)}: a file name holds no NUL character"
        ) from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, what, mode)


def read_user_file(
    path: Path, what: str, *, max_bytes: int = MAX_USER_FILE_BYTES
) -> bytes:
    """The bytes of the regular file ``path`` names, at most ``max_bytes``.

    Parameters
    ----------
    path
        A path given by the user.
    what
        What the file is, for messages (``"observing blocks"``).
    max_bytes
        Largest size accepted.

    Raises
    ------
    ConfigError
        The path cannot be opened, is not a regular file (FIFO, device,
        folder...) or is larger than ``max_bytes``; one line naming it.
    """
    check_user_file(path, what)  # refuse devices before opening them
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise path_error(path, what, err) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # replaced since the check above
            raise _not_regular(path, what, info.st_mode)
        if info.st_size > max_bytes:
            raise _too_large(path, what, max_bytes)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:  # it grew while read
                raise _too_large(path, what, max_bytes)
    except OSError as err:
        raise path_error(path, what, err) from None
    finally:
        os.close(fd)
    log.debug("read %s %s (%d bytes)", what, path, size)
    return b"".join(chunks)


def _too_large(path: object, what: str, max_bytes: int) -> ConfigError:
    return ConfigError(
        f"{what} {shown_path(path)}: larger than {max_bytes // (1024 * 1024)} MiB; "
        f"a {what} file is a few kilobytes of text"
    )


def read_user_text(
    path: Path, what: str, *, max_bytes: int = MAX_USER_FILE_BYTES
) -> str:
    """:func:`read_user_file` decoded as UTF-8 (ConfigError if it is not)."""
    data = read_user_file(path, what, max_bytes=max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {shown_path(path)}: not a UTF-8 text file ({err.reason} at "
            f"byte {err.start})"
        ) from None


def resolved(base: Path, raw: str, what: str) -> Path:
    """``base / raw`` made absolute with its links resolved, or one ConfigError.

    ``Path.resolve`` raises RuntimeError on a symbolic-link loop (Python
    3.11) and OSError on other trouble: both are a user's mistake here.
    """
    try:
        return (base / raw).resolve()
    except (OSError, RuntimeError, ValueError):
        raise ConfigError(
            f"{what} {shown_path(raw)}: cannot resolve the path (a symbolic-link "
            "loop, or a name longer than the system allows); give a plain path"
        ) from None
