"""SHA-256 hashed ahead (reduce.digests): right digest, never a stale one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from reduce.digests import DigestPrefetch
from reduce.files import identity


def _write(path: Path, seed: int, size: int = 1 << 20) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, size, np.uint8).tobytes()
    path.write_bytes(data)
    return data


def test_prefetched_digest_is_the_files(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{k}.fits" for k in range(3)]
    contents = [_write(p, k) for k, p in enumerate(paths)]
    prefetch = DigestPrefetch(paths)
    prefetch.join(timeout=60)
    for path, data in zip(paths, contents, strict=True):
        got = prefetch.take(path, identity(os.stat(path)))
        assert got == hashlib.sha256(data).hexdigest()


def test_a_file_rewritten_after_hashing_gets_no_digest(tmp_path: Path) -> None:
    path = tmp_path / "f.fits"
    _write(path, 1)
    prefetch = DigestPrefetch([path])
    prefetch.join(timeout=60)
    _write(path, 2)  # same size, new content
    os.utime(path, ns=(1, 1))  # and a modification time unlike the first
    assert prefetch.take(path, identity(os.stat(path))) is None


def test_a_file_claimed_by_the_caller_first_is_left_to_it(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{k}.fits" for k in range(40)]
    for k, p in enumerate(paths):
        _write(p, k, 1 << 16)
    prefetch = DigestPrefetch(paths)
    last = paths[-1]
    got = prefetch.take(last, identity(os.stat(last)))
    prefetch.join(timeout=60)
    # Either the thread had hashed it already (right digest) or the caller
    # claimed it (None: the caller hashes); never a wrong digest.
    assert got in (None, hashlib.sha256(last.read_bytes()).hexdigest())
    assert prefetch.take(tmp_path / "unknown.fits", (0, 0, 0, 0, 0)) is None


def test_an_unreadable_file_is_skipped(tmp_path: Path) -> None:
    missing = tmp_path / "missing.fits"
    prefetch = DigestPrefetch([missing])
    prefetch.join(timeout=60)
    assert prefetch.take(missing, (0, 0, 0, 0, 0)) is None
