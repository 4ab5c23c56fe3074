"""Paths that are not the regular file they should be, for both red-team tables.

Each maker ``place(folder, name, content)`` returns the path to give for a
file ``name``: a regular file holding ``content``, or a FIFO, a directory,
a symbolic-link loop, a link to nothing, ``/dev/zero``, or a path of 5,000
characters. :data:`PLACES` pairs each hostile kind with the words its
refusal must hold (any one of them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.redteam.cases import long_path

Place = Callable[[Path, str, bytes], Path]
"""``place(folder, name, content)``: the path to give for file ``name``."""


def regular(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def as_fifo(folder: Path, name: str, content: bytes) -> Path:
    os.mkfifo(folder / name)
    return folder / name


def as_dir(folder: Path, name: str, content: bytes) -> Path:
    (folder / name).mkdir()
    return folder / name


def as_loop(folder: Path, name: str, content: bytes) -> Path:
    (folder / name).symlink_to(folder / f"{name}.2")
    (folder / f"{name}.2").symlink_to(folder / name)
    return folder / name


def dangling(folder: Path, name: str, content: bytes) -> Path:
    (folder / name).symlink_to(folder / "gone")
    return folder / name


def dev_zero(folder: Path, name: str, content: bytes) -> Path:
    return Path("/dev/zero")


def too_long(folder: Path, name: str, content: bytes) -> Path:
    return long_path(folder, name)


#: Each hostile kind of path: how to make it, what the refusal must say.
PLACES: dict[str, tuple[Place, tuple[str, ...]]] = {
    "fifo": (as_fifo, ("FIFO", "pipe")),
    "dev-zero": (dev_zero, ("device",)),
    "directory": (as_dir, ("directory", "folder")),
    "symlink-loop": (as_loop, ("loop", "symbolic")),
    "dangling-symlink": (dangling, ("not exist", "not found", "no such file")),
    "path-5000-characters": (too_long, ("too long", "longer", "at most")),
}
