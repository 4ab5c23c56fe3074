"""Reprocessing a raw calibration archive: ``megara-dark archive``.

:func:`plan_archive` scans the archive (:mod:`reduce.archive.scan`), groups
its frames into calibration sets (:mod:`reduce.archive.sets`) and pairs each
dark set with a bias set (:mod:`reduce.archive.pairing`); the result is one
:class:`~reduce.archive.task.SetTask` per set, products in
``OUT/<night YYYY-MM-DD>/obsid<set id>_results/``.

:func:`run_archive` runs them in two phases: every bias set, then every
dark set, whose master bias is
``OUT/<bias night>/obsid<bias set id>_results/master_bias.fits``. A dark set
whose bias set failed is reduced without a master bias (its QA says so, and
its products say why). After each reduced or up-to-date dark set its QC is
judged (:mod:`sequencer.engineering.verify`) and recorded in the history
database with source ``archive``, its night and the archive's root.

The sets run on a :class:`Runner`: a :mod:`concurrent.futures` executor,
either a local process pool (:func:`local_runner`) or a Dask distributed
cluster (``megara-dark archive --scheduler``, through
``Client.get_executor``: :mod:`sequencer.engineering.archive_cli`); phases,
outcomes and events are the same code for both. A task is a
:class:`~reduce.archive.task.SetTask` (paths, not pixels): the worker reads
the frames and writes the products itself, so a cluster's workers must see
the archive and the output folder at the same paths as this process.

Each local worker process reduces one set at a time with
``cpus // workers`` threads; processes start by ``forkserver`` (a fork of a
process that already holds threads and large arrays is neither safe nor
cheap).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError
from reduce.archive.pairing import pair_biases
from reduce.archive.scan import Skipped, scan_archive
from reduce.archive.sets import CalibrationSet, SetProblem, group_sets
from reduce.archive.task import SetOutcome, SetTask, clean_partials, run_set
from reduce.rawframe import Mode
from sequencer.engineering.figures import load_dark_set
from sequencer.engineering.history import History
from sequencer.engineering.limits import VerifySettings
from sequencer.engineering.verify import verify

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
"""Receives each event: a flat dict with an ``event`` name."""


@dataclass(frozen=True)
class ArchivePlan:
    """What an archive holds and what will be reduced.

    Attributes
    ----------
    root, out
        The archive's root and the output folder (absolute).
    biases, darks
        One task per bias set, one per dark set, in night and time order.
    bias_of
        Dark set id to the id of its bias set (absent: no bias set).
    frames
        Raw bias and dark frames found.
    skipped
        Files of the archive that are no usable raw bias or dark.
    problems
        Frames left out of every set (duplicates, mixed blocks, short sets)
        and dark sets without a bias set.
    """

    root: Path
    out: Path
    biases: tuple[SetTask, ...]
    darks: tuple[SetTask, ...]
    bias_of: Mapping[str, str]
    frames: int
    skipped: tuple[Skipped, ...]
    problems: tuple[SetProblem, ...]

    @property
    def tasks(self) -> tuple[SetTask, ...]:
        return self.biases + self.darks


@dataclass
class ArchiveReport:
    """What a run of :func:`run_archive` did."""

    plan: ArchivePlan
    outcomes: dict[str, SetOutcome] = field(default_factory=dict)
    tasks: dict[str, SetTask] = field(default_factory=dict)
    recorded: int = 0
    history_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes.values())

    @property
    def failed(self) -> list[SetOutcome]:
        return [o for o in self.outcomes.values() if o.status == "failed"]

    @property
    def exit_status(self) -> int:
        """1 when any set failed, else 0."""
        return 1 if self.failed else 0


def _results(out: Path, found: CalibrationSet) -> Path:
    return out / f"{found.night:%Y-%m-%d}" / f"obsid{found.set_id}_results"


def _task(
    found: CalibrationSet, out: Path, settings: dict[str, Any], **extra: Any
) -> SetTask:
    return SetTask(
        set_id=found.set_id,
        night=found.night,
        mode=found.mode.value,
        frames=found.paths,
        out_dir=out / f"{found.night:%Y-%m-%d}",
        bias_product=extra.pop("bias_product", None),
        **settings,
        **extra,
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan_archive(
    root: Path,
    out: Path,
    *,
    boundary_hour_utc: float = 12.0,
    gap_s: float = 900.0,
    min_frames: int = 3,
    qc_config: Path | None = None,
    threads: int = 1,
) -> ArchivePlan:
    """Scan ``root``, group and pair its sets: the tasks to run.

    Files under ``out`` (when it lies inside ``root``) are left out: they
    are this program's products.

    Raises
    ------
    InputError
        ``root`` is not a folder.
    SettingsError
        An invalid grouping parameter.
    """
    root, out = Path(root).absolute(), Path(out).absolute()
    entries, skipped = scan_archive(root)
    entries = [e for e in entries if not _inside(e.path, out)]
    skipped = [s for s in skipped if not _inside(s.path, out)]
    sets, problems = group_sets(
        entries, boundary_hour_utc=boundary_hour_utc, gap_s=gap_s, min_frames=min_frames
    )
    plans, unpaired = pair_biases(sets)
    settings = {"qc_config": qc_config, "threads": threads, "min_frames": min_frames}
    biases = tuple(_task(s, out, settings) for s in sets if s.mode is Mode.BIAS)
    darks: list[SetTask] = []
    bias_of: dict[str, str] = {}
    for p in plans:
        product = None
        if p.bias is not None:
            product = _results(out, p.bias) / "master_bias.fits"
            bias_of[p.dark.set_id] = p.bias.set_id
        darks.append(_task(p.dark, out, settings, bias_product=product, note=p.note))
    return ArchivePlan(
        root=root,
        out=out,
        biases=biases,
        darks=tuple(darks),
        bias_of=bias_of,
        frames=len(entries),
        skipped=tuple(skipped),
        problems=tuple(problems + unpaired),
    )


class Progress:
    """Sets done of the total, the rate and the time left, as events."""

    def __init__(self, total: int, emit: Emit) -> None:
        self.total = total
        self.done = 0
        self.emit = emit
        self.start = time.monotonic()

    def started(self, task: SetTask) -> None:
        self.emit(
            {
                "event": "set_started",
                "set_id": task.set_id,
                "mode": task.mode,
                "night": f"{task.night:%Y-%m-%d}",
                "frames": len(task.frames),
                "bias": None if task.bias_product is None else str(task.bias_product),
            }
        )

    def finished(self, task: SetTask, outcome: SetOutcome) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        self.emit(
            {
                "event": "set_done",
                **outcome.to_json_dict(),
                "mode": task.mode,
                "night": f"{task.night:%Y-%m-%d}",
                "done": self.done,
                "total": self.total,
                "rate_per_min": round(rate * 60.0, 2),
                "remaining_s": None if left is None else round(left, 1),
            }
        )


def _outcome_of(future: Future[SetOutcome], task: SetTask) -> SetOutcome:
    """The worker's outcome; a crashed worker is a failed set, not an error."""
    try:
        return future.result()
    except Exception as err:  # a worker that died (out of memory, a signal)
        reason = f"worker: {err!r}"
        return SetOutcome(task.set_id, "failed", reason, None, None, (), 0.0, 0.0)


def _run_phase(
    runner: Runner, tasks: Sequence[SetTask], progress: Progress
) -> Iterator[tuple[SetTask, SetOutcome]]:
    """Run ``tasks``, at most :attr:`Runner.capacity` at a time (so that a
    started event is a set a worker has taken); yield each as it ends."""
    pending = iter(tasks)
    running: dict[Future[SetOutcome], SetTask] = {}

    def fill() -> None:
        for _ in range(max(1, runner.capacity()) - len(running)):
            task = next(pending, None)
            if task is None:
                return
            progress.started(task)
            running[runner.submit(task)] = task

    fill()
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            task = running.pop(future)
            yield task, _outcome_of(future, task)
        fill()


def _without_bias(plan: ArchivePlan, failed: Mapping[str, str]) -> list[SetTask]:
    """The dark tasks, those whose bias set failed changed to use none."""
    darks: list[SetTask] = []
    for dark in plan.darks:
        bias = plan.bias_of.get(dark.set_id)
        if bias is not None and bias in failed:
            note = f"no master bias: bias set {bias} failed ({failed[bias]})"
            dark = replace(dark, bias_product=None, note=note)  # noqa: PLW2901
        darks.append(dark)
    return darks


def _record(
    db: History,
    task: SetTask,
    outcome: SetOutcome,
    settings: VerifySettings,
    root: Path,
) -> None:
    if outcome.product is None:
        return
    dark = load_dark_set(outcome.product.parent)
    verdict = verify(dark, settings)
    db.record(verdict, "archive", night=f"{task.night:%Y-%m-%d}", archive=str(root))


def run_archive(
    plan: ArchivePlan,
    runner: Runner,
    *,
    history: Path | None,
    settings: VerifySettings | None = None,
    emit: Emit | None = None,
) -> ArchiveReport:
    """Reduce every set of ``plan``: biases, then darks (see module docstring).

    Parameters
    ----------
    plan
        From :func:`plan_archive`.
    runner
        Where the sets run (:func:`local_runner`, a Dask cluster's).
    history
        History database for the dark sets' QC (None: not recorded).
    settings
        Verification limits (None: the defaults).
    emit
        Receives each event (``set_started``, ``set_done``).
    """
    start = time.monotonic()
    report = ArchiveReport(plan)
    settings = settings or VerifySettings()
    progress = Progress(len(plan.tasks), emit or (lambda event: None))
    for night in sorted({t.out_dir for t in plan.tasks}):
        clean_partials(night)
    db = History(history) if history is not None else None
    try:
        for task, outcome in _run_phase(runner, plan.biases, progress):
            _finish(report, task, outcome, progress)
        failed = {o.set_id: o.reason for o in report.failed}  # biases only
        for task, outcome in _run_phase(runner, _without_bias(plan, failed), progress):
            _finish(report, task, outcome, progress)
            if db is not None and outcome.status != "failed":
                try:
                    _record(db, task, outcome, settings, plan.root)
                    report.recorded += 1
                except ConfigError as err:
                    report.history_errors.append(f"{task.set_id}: {err}")
    finally:
        if db is not None:
            db.close()
    report.seconds = round(time.monotonic() - start, 3)
    return report


def _finish(
    report: ArchiveReport, task: SetTask, outcome: SetOutcome, progress: Progress
) -> None:
    report.outcomes[task.set_id] = outcome
    report.tasks[task.set_id] = task
    progress.finished(task, outcome)


@dataclass(frozen=True)
class Runner:
    """Where the sets run.

    Attributes
    ----------
    submit
        Starts :func:`~reduce.archive.task.run_set` on one task: a
        :class:`concurrent.futures.Future` of its outcome.
    capacity
        How many sets it runs at once, asked before each submission (a
        cluster may grow or shrink).
    threads
        Reduction threads for each set.
    """

    submit: Callable[[SetTask], Future[SetOutcome]]
    capacity: Callable[[], int]
    threads: int


def quiet_interrupt() -> None:
    """A worker's start: Ctrl-C, which the terminal sends the whole process
    group, is the client's to handle. The worker finishes the set it holds
    (the client submits no more), so an interrupted run leaves whole sets;
    the client says what happened."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def local_runner(workers: int) -> Iterator[Runner]:
    """A pool of ``workers`` local processes (started by ``forkserver``, as
    sets are submitted), each set with :func:`threads_per_worker` threads."""
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=quiet_interrupt
    )
    try:
        yield Runner(
            lambda task: pool.submit(run_set, task),
            lambda: workers,
            threads_per_worker(workers),
        )
    except BaseException:
        # Ctrl-C (or an error): the sets not yet started are dropped, the one
        # a worker holds ends whole. Cancelling also drops a submission that
        # Ctrl-C cut short inside submit() (recorded as pending, never queued
        # to a worker), which a plain shutdown would wait for forever.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def default_workers() -> int:
    """One worker per CPU."""
    return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Reduction threads of each worker: the CPUs shared out, at least one."""
    return max(1, default_workers() // workers)
