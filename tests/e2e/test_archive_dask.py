"""``megara-dark archive --scheduler`` on a real Dask cluster on loopback.

A ``dask scheduler`` and two ``dask worker`` processes (one thread each, no
nanny: the worker is the process, so a SIGKILL loses it as a node crash
would) serve :func:`tests.e2e.archive_data.write_archive`'s archive. The
products of the cluster are those of the local pool, pixel for pixel; a
worker killed in the middle of a set loses nothing (the scheduler runs the
set again on the other worker, which deletes the dead one's ``.partial``
folder); a rerun skips every set. The command's own refusals (no Dask, a
scheduler that does not answer, ``--workers`` with ``--scheduler``) are one
line and exit status 2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from sequencer.simlaunch import megara_dark
from tests.e2e.archive_data import (
    Archive,
    archive_argv,
    primary,
    run_archive,
    snapshot,
    write_archive,
)

pytestmark = pytest.mark.e2e

distributed = pytest.importorskip("distributed")

PARTIAL = re.compile(r"\.partial-(?P<set>[^.]+)\.[^.]+\.(?P<pid>\d+)\.[0-9a-f]{8}")
"""The folder of a set under way (``reduce.archive.task.partial_name``)."""

SCHEDULER = ("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0")
SCHEDULER += ("--no-dashboard",)
WORKER = ("distributed.cli.dask_worker", "--nworkers", "1", "--nthreads", "1")
WORKER += ("--no-nanny", "--no-dashboard", "--host", "127.0.0.1")


@dataclass
class Cluster:
    """A scheduler and its workers, each a process of this test."""

    folder: Path
    address: str = ""
    workers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 (closed at teardown)
        self.logs.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """Workers first, then the scheduler: SIGTERM, SIGKILL after 15 s."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        for log in self.logs:
            log.close()


def _scheduler_file(path: Path, scheduler: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert scheduler.poll() is None, "the scheduler exited"
        try:
            return str(json.loads(path.read_text())["address"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.1)
    raise AssertionError("the scheduler wrote no scheduler file in 60 s")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("dask")
    file = folder / "scheduler.json"
    found = Cluster(folder)
    worker_args = [*WORKER, "--scheduler-file", str(file), "--local-directory"]
    try:
        scheduler = found.start(
            [*SCHEDULER, "--scheduler-file", str(file)], "scheduler"
        )
        found.address = _scheduler_file(file, scheduler)
        for k in range(2):
            scratch = str(folder / f"worker{k}")
            worker = found.start([*worker_args, scratch], f"worker{k}")
            found.workers[worker.pid] = worker
        with distributed.Client(found.address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("archive")
    yield write_archive(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def local(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The products of the local pool, the reference."""
    out = tmp_path_factory.mktemp("local")
    status, _, stderr = run_archive(
        archive, out / "out", out / "h.sqlite", "--workers", "2"
    )
    assert status == 0, stderr
    yield out / "out"
    shutil.rmtree(out, ignore_errors=True)


def same_products(out: Path, reference: Path) -> None:
    """Every FITS product of ``reference`` in ``out``, the same pixels."""
    products = sorted(p.relative_to(reference) for p in reference.rglob("*.fits"))
    assert len(products) >= 3
    assert sorted(p.relative_to(out) for p in out.rglob("*.fits")) == products
    for name in products:
        assert np.array_equal(primary(out / name), primary(reference / name)), name
    assert not list(out.rglob(".partial-*"))


def test_cluster_products_are_those_of_the_local_pool(
    archive: Archive, cluster: Cluster, local: Path, tmp_path: Path
) -> None:
    out, history = tmp_path / "out", tmp_path / "history.sqlite"
    status, events, stderr = run_archive(
        archive, out, history, "--scheduler", cluster.address
    )
    assert status == 0, stderr
    summary = events[-1]
    assert (summary["reduced"], summary["skipped"], summary["failed"]) == (3, 0, [])
    assert summary["recorded"] == 2
    assert "[3/3]" in stderr
    same_products(out, local)


def test_a_worker_killed_mid_set_loses_nothing(
    archive: Archive, cluster: Cluster, local: Path, tmp_path: Path
) -> None:
    out, history = tmp_path / "out", tmp_path / "history.sqlite"
    argv = archive_argv(archive, out, history, "--scheduler", cluster.address)
    with open(tmp_path / "stdout", "wb") as stdout, open(tmp_path / "err", "wb") as err:
        run = subprocess.Popen(argv, stdout=stdout, stderr=err)
        killed, left = _kill_a_busy_worker(cluster, out, run)
        status = run.wait(timeout=300)
    stderr = (tmp_path / "err").read_text()
    assert status == 0, stderr
    assert left.name.startswith(".partial-"), "killed mid-set: its folder left"
    assert cluster.workers[killed].poll() == -signal.SIGKILL
    events = [
        json.loads(line) for line in (tmp_path / "stdout").read_text().splitlines()
    ]
    summary = events[-1]
    assert (summary["reduced"], summary["skipped"], summary["failed"]) == (3, 0, [])
    assert [e["done"] for e in events if e["event"] == "set_done"] == [1, 2, 3]
    same_products(out, local)  # the dead worker's .partial folder deleted too

    # Again, on the one worker left: every set up to date, nothing written.
    before = snapshot(out)
    status, events, stderr = run_archive(
        archive, out, history, "--scheduler", cluster.address
    )
    assert status == 0, stderr
    assert (events[-1]["reduced"], events[-1]["skipped"]) == (0, 3)
    assert snapshot(out) == before


def _kill_a_busy_worker(
    cluster: Cluster, out: Path, run: subprocess.Popen[bytes]
) -> tuple[int, Path]:
    """SIGKILL the worker of the first dark set under way, once its
    ``.partial`` folder exists: its pid and that folder."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        for folder in out.glob("*/.partial-*"):
            found = PARTIAL.fullmatch(folder.name)
            if found and "_dark_" in found["set"]:
                pid = int(found["pid"])
                if pid in cluster.workers:
                    os.kill(pid, signal.SIGKILL)
                    cluster.workers[pid].wait(timeout=30)
                    assert folder.exists(), "the set ended before the kill"
                    return pid, folder
        time.sleep(0.005)
    raise AssertionError("no dark set was seen under way on a worker")


def _megara_dark(*args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*megara_dark(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_refusals_are_one_line(archive: Archive, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    done = _megara_dark("archive", str(archive.root), "--workdir", out, "--scheduler", address)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"megara-dark: error: Dask scheduler {address}: ")
    assert len(done.stderr.splitlines()) == 1, done.stderr

    argv = ["archive", str(archive.root), "--workdir", out, "--scheduler", address]
    done = _megara_dark(*argv, "--workers", "2")
    assert done.returncode == 2
    assert "--workers sizes the local pool" in done.stderr

    # Without Dask: a module named distributed that cannot be imported.
    (tmp_path / "nodask").mkdir()
    (tmp_path / "nodask" / "distributed.py").write_text("raise ImportError\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "nodask")}
    done = _megara_dark(*argv, env=env)
    assert done.returncode == 2
    assert done.stderr == (
        "megara-dark: error: --scheduler needs Dask: "
        "pip install 'megara-dark[archive]'\n"
    )
    assert not (tmp_path / "out").exists()
