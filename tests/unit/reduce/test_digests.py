"""SHA-256 hashed ahead (reduce.digests): right digest, never a stale one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from reduce.digests import DigestPrefetch, prefetch_reduction_file
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


def test_a_reduction_file_prefetches_its_frames_without_numpy(tmp_path: Path) -> None:
    # The frames of every block, relative to the data folder or absolute, are
    # hashed; it must not import numpy (hashing starts while numpy loads).
    data = tmp_path / "data"
    data.mkdir()
    names = ["b0.fits", "b1.fits", "d0.fits"]
    contents = {name: _write(data / name, k, 4096) for k, name in enumerate(names)}
    absolute = tmp_path / "elsewhere.fits"
    contents[str(absolute)] = _write(absolute, 9, 4096)
    blocks = tmp_path / "blocks.yaml"
    blocks.write_text(
        "id: bias\nmode: MegaraBiasImage\nframes: [b0.fits, b1.fits]\n---\n"
        f"id: dark\nmode: MegaraDarkImage\nframes: [d0.fits, '{absolute}']\n"
    )
    expected = {
        os.path.abspath(n if os.path.isabs(n) else data / n): hashlib.sha256(
            c
        ).hexdigest()
        for n, c in contents.items()
    }
    script = (
        "import json, os, sys\n"
        "from reduce.digests import prefetch_reduction_file\n"
        "from reduce.files import identity\n"
        f"p = prefetch_reduction_file({str(blocks)!r}, {str(data)!r})\n"
        "numpy = 'numpy' in sys.modules\n"
        "p.join(60)\n"
        f"paths = {sorted(expected)!r}\n"
        "got = {q: p.take(q, identity(os.stat(q))) for q in paths}\n"
        "print(json.dumps({'numpy': numpy, 'hashed': got}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    assert found["numpy"] is False
    assert found["hashed"] == expected


def test_an_unreadable_reduction_file_prefetches_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "blocks.yaml"
    bad.write_text("frames: [a.fits\n")  # not YAML
    assert prefetch_reduction_file(bad, tmp_path) is None
    assert prefetch_reduction_file(tmp_path / "missing.yaml", tmp_path) is None
