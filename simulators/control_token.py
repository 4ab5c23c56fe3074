"""The control port's token: a secret in a file only its owner can read.

The control port listens on the loopback interface, where every local user
can connect. So that only the engineer who started the simulators (and the
programs that engineer runs) can arm faults, the launcher writes a random
token (:func:`secrets.token_hex`, 32 hex digits) to a file of mode 0600 in a
directory of mode 0700 under ``$XDG_RUNTIME_DIR`` (or the system's temporary
directory when that is not set), prints the file's path in its control line
(``"token_file": ...``) and removes both when the simulators exit. Every
control request carries the token (``"token": "..."``); a client reads it
from the file (:func:`read_token`, ``python -m simulators.control
--token-file PATH``).

Known limitation: a simulator process killed with SIGKILL leaves its token
directory behind (``megara-dark-sim-*``); the token in it is useless once the
process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
import tempfile
from pathlib import Path

from drivers.errors import ConfigError

log = logging.getLogger(__name__)

#: Name of the token file inside its private directory.
TOKEN_NAME = "control.token"
_TOKEN_RE = re.compile(r"[0-9a-f]{32}")


def _base_dir() -> Path:
    """``$XDG_RUNTIME_DIR`` when it names a directory, else the temporary one."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return Path(runtime)
    return Path(tempfile.gettempdir())


class TokenFile:
    """A fresh token written to an owner-only file; :meth:`remove` deletes it.

    Parameters
    ----------
    base
        Where to make the private directory (default: ``$XDG_RUNTIME_DIR`` or
        the temporary directory).
    """

    def __init__(self, base: Path | None = None) -> None:
        self.token = secrets.token_hex(16)
        folder = Path(
            tempfile.mkdtemp(prefix="megara-dark-sim-", dir=base or _base_dir())
        )
        self.path = folder / TOKEN_NAME
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(self.token + "\n")
        except BaseException:
            folder.rmdir()
            raise

    def remove(self) -> None:
        """Delete the token file and its directory (quietly if already gone)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        try:
            self.path.parent.rmdir()
        except FileNotFoundError:
            pass
        except OSError as err:  # someone put a file in our private directory
            log.warning("control token directory %s: %s", self.path.parent, err)

    def __enter__(self) -> TokenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def read_token(path: str | os.PathLike[str]) -> str:
    """The token in a simulator's token file.

    Raises
    ------
    ConfigError
        The file cannot be read, is not a regular file, can be read by other
        users than its owner, or does not hold a token.
    """
    where = f"control token file {os.fspath(path)}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise ConfigError(
            f"{where}: cannot open it ({err.strerror}); give the token_file "
            "that the simulators printed in their control line"
        ) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"{where}: mode {stat.S_IMODE(info.st_mode):04o} lets other users "
                "read it; expected 0600 as the simulators write it"
            )
        text = handle.read(256).decode("ascii", errors="replace").strip()
    if not _TOKEN_RE.fullmatch(text):
        raise ConfigError(f"{where}: does not hold a token (32 hex digits)")
    return text
