"""The archive's local pool and Ctrl-C: it never waits for a set nobody runs."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import _WorkItem
from typing import Any

import pytest

from sequencer.engineering import archive


def test_ctrl_c_inside_submit_does_not_hang_the_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C can cut ProcessPoolExecutor.submit() short after it recorded the
    # work item as pending and before it queued the item's id: no worker
    # ever gets it, and a plain shutdown(wait=True) waits for it forever (CI
    # saw `megara-dark archive` hang after Ctrl-C). The pool must still close
    # once the set a worker holds is done.
    calls: list[object] = []

    class CutShort(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            calls.append(fn)
            if len(calls) == 1:  # a real set: the pool's manager is running
                return super().submit(os.getpid)
            with self._shutdown_lock:  # type: ignore[attr-defined]
                work = _WorkItem(Future(), fn, args, kwargs)
                self._pending_work_items[self._queue_count] = work  # type: ignore[attr-defined]
                self._queue_count += 1  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    monkeypatch.setattr(archive, "ProcessPoolExecutor", CutShort)
    interrupted = threading.Event()

    def run() -> None:
        try:
            with archive.local_runner(1) as runner:
                runner.submit(None).result(timeout=60)  # type: ignore[arg-type]
                runner.submit(None)  # type: ignore[arg-type]
        except KeyboardInterrupt:
            interrupted.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(90)
    assert interrupted.is_set(), "the pool waited for a set no worker was given"
