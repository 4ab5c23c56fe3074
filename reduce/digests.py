"""SHA-256 of raw frames, computed ahead on a thread of its own.

The provenance record (``task.json``) carries each input's SHA-256. Hashing
20 full frames costs about 0.4 s of CPU, and ``hashlib`` releases the GIL,
so the CLI starts a :class:`DigestPrefetch` as soon as it knows the frame
files, before it imports numpy and astropy: the hashes are then computed on
the otherwise idle core while the interpreter imports.

Each file is hashed from a read-only memory map (no copy; one file mapped at
a time) together with its identity (device, inode, size, modification and
change times in ns). :func:`reduce.frames.inspect_frame` uses a digest only
if the file it read has the same identity, and hashes its own buffer
otherwise, so a file rewritten in between is never reported with a stale
digest. A file the inspection reaches first is claimed by it and skipped
here; one being hashed here is waited for, not hashed twice.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from reduce.errors import InputError
from reduce.files import Identity, identity, open_regular

log = logging.getLogger(__name__)


class DigestPrefetch:
    """Hash files on a daemon thread, in order; hand the digests out once.

    Parameters
    ----------
    paths
        Files to hash (unreadable ones are skipped: the inspection reports
        them).
    """

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self._paths = [_key(p) for p in paths]
        self._lock = threading.Lock()
        self._claimed: set[str] = set()
        self._done: dict[str, tuple[Identity, str] | None] = {}
        self._events = {p: threading.Event() for p in self._paths}
        self._thread = threading.Thread(
            target=self._run, name="sha256-prefetch", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        for path in self._paths:
            with self._lock:
                if path in self._claimed:
                    continue
                self._claimed.add(path)
            try:
                self._done[path] = _hash_file(path)
            except (OSError, ValueError, InputError) as err:  # the inspection says why
                log.debug("sha256 prefetch of %s skipped: %s", path, err)
                self._done[path] = None
            finally:
                self._events[path].set()

    def take(self, path: str | Path, ident: Identity) -> str | None:
        """The digest of ``path`` if it was (being) hashed with this identity.

        None when the file is not known, was reached here first by the
        caller (who must hash it), or changed since it was hashed.
        """
        key = _key(path)
        event = self._events.get(key)
        if event is None:
            return None
        with self._lock:
            if key not in self._claimed:
                self._claimed.add(key)  # the caller hashes it; skip it here
                return None
        event.wait()
        found = self._done.get(key)
        if found is None or found[0] != ident:
            return None
        return found[1]

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread (tests; the CLI never needs to)."""
        self._thread.join(timeout)


def _key(path: str | Path) -> str:
    """The file's name as a key: absolute, links not followed (a symbolic-link
    loop must reach the inspection, which reports it)."""
    return os.path.abspath(path)


def _hash_file(path: str) -> tuple[Identity, str]:
    # A regular file only: a FIFO is never opened, a device never read.
    fd, info = open_regular(path, "frame file")
    try:
        before = identity(info)
        if before[2] == 0:
            return before, hashlib.sha256(b"").hexdigest()
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mapped:
            digest = hashlib.sha256(mapped).hexdigest()
        after = identity(os.fstat(fd))
    finally:
        os.close(fd)
    if after != before:
        raise ValueError("changed while hashed")
    return before, digest


def prefetch_reduction_file(
    ob_path: str | Path, datadir: str | Path
) -> DigestPrefetch | None:
    """Start hashing the frames of a reduction YAML file (None if unreadable).

    Only the frame names are taken here, with light imports (yaml, no
    numpy: :mod:`reduce.blocks` imports the raw-frame module, and numpy
    with it), so that hashing starts before the interpreter imports numpy.
    The reduction parses the file again and reports any error in it; a name
    that is not a frame of a valid block is at worst hashed for nothing.
    """
    from reduce.errors import ReductionError  # noqa: PLC0415
    from reduce.safeyaml import load_yaml_file  # noqa: PLC0415

    try:
        docs = load_yaml_file(ob_path)
    except (ReductionError, OSError, ValueError):
        return None
    names = [
        name
        for doc in docs
        if isinstance(doc, dict) and isinstance(doc.get("frames"), list)
        for name in doc["frames"]
        if isinstance(name, str) and name and "\0" not in name
    ]
    paths = [
        Path(name) if Path(name).is_absolute() else Path(datadir) / name
        for name in names
    ]
    return DigestPrefetch(paths)
