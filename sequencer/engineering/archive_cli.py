"""``megara-dark archive``: reduce every bias and dark set of a raw archive.

Registered with the engineering commands (:data:`sequencer.engineering.cli.COMMANDS`).
User mistakes (ROOT not a folder, a bad option or QC file, a Dask scheduler
that does not answer) are one line and exit status 2; a set that failed
makes exit status 1.

The sets run on a local process pool, or with ``--scheduler`` on the
workers of a Dask distributed scheduler (:func:`dask_runner`); Dask is
imported only then (the ``archive`` extra), never by the default path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drivers.errors import ConfigError

if TYPE_CHECKING:
    from reduce.archive.scan import Skipped
    from reduce.archive.task import SetOutcome, SetTask
    from sequencer.engineering.archive import ArchiveReport, Runner

_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if level.upper() == "WARNING":
        # Archived frames have no run journal and often no interlock
        # readings: verify would warn about each of them for every set.
        logging.getLogger("sequencer.engineering.figures").setLevel(logging.ERROR)


def progress_line(event: Mapping[str, Any]) -> str | None:
    """The stderr line of a ``set_done`` event (None for the others)."""
    if event.get("event") != "set_done":
        return None
    status = str(event["status"])
    what = f"QA {event['qa']}" if event.get("qa") else str(event.get("reason", ""))
    if status == "failed":
        what = str(event.get("reason", ""))
    left = event.get("remaining_s")
    eta = f", about {_duration(float(left))} left" if left is not None else ""
    return (
        f"[{event['done']}/{event['total']}] {event['set_id']}: {status} "
        f"({what}; {float(event['seconds']):.1f} s); "
        f"{float(event['rate_per_min']):.1f} sets/min{eta}"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _files(paths: Sequence[Path], limit: int = 6) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f", ... ({len(paths)} files)" if len(paths) > limit else "")


def summary_lines(report: ArchiveReport, history: Path | None) -> list[str]:
    """The human summary of a run: sets, outcomes, skipped files, problems."""
    plan = report.plan
    lines = [
        f"archive {plan.root}: {plan.frames} raw frame(s), {len(plan.tasks)} "
        f"calibration set(s) ({len(plan.biases)} bias, {len(plan.darks)} dark) "
        f"-> {plan.out}",
        f"  reduced {report.count('reduced')}, up to date (skipped) "
        f"{report.count('skipped')}, failed {report.count('failed')} "
        f"in {report.seconds:.1f} s",
    ]
    lines += [f"  FAILED {o.set_id}: {o.reason}" for o in report.failed]
    for task in report.tasks.values():
        if task.mode == _mode_dark() and task.note:
            lines.append(f"  {task.set_id}: {task.note}")
    if plan.skipped:
        by_reason = _by_reason(plan.skipped)
        counts = ", ".join(f"{k} {n}" for k, n in by_reason.items())
        lines.append(f"  skipped files: {len(plan.skipped)} ({counts})")
        lines += [f"    {s.category}: {s.path}: {s.reason}" for s in plan.skipped]
    if plan.problems:
        lines.append(f"  grouping problems: {len(plan.problems)}")
        lines += [
            f"    {p.what}: {p.reason} [{_files(p.files)}]" for p in plan.problems
        ]
    if history is not None:
        lines.append(f"  history: {report.recorded} dark set(s) recorded in {history}")
    lines += [f"  history not recorded for {e}" for e in report.history_errors]
    return lines


def summary_event(report: ArchiveReport, history: Path | None) -> dict[str, Any]:
    """The ``summary`` event (``--json``)."""
    plan = report.plan
    return {
        "event": "summary",
        "root": str(plan.root),
        "out": str(plan.out),
        "frames": plan.frames,
        "sets": len(plan.tasks),
        "reduced": report.count("reduced"),
        "skipped": report.count("skipped"),
        "failed": [{"set_id": o.set_id, "reason": o.reason} for o in report.failed],
        "outcomes": [
            {**o.to_json_dict(), "note": report.tasks[o.set_id].note}
            for o in report.outcomes.values()
        ],
        "skipped_files": _by_reason(plan.skipped),
        "skipped_list": [
            {"file": str(s.path), "category": s.category, "reason": s.reason}
            for s in plan.skipped
        ],
        "problems": [
            {"what": p.what, "reason": p.reason, "files": [str(f) for f in p.files]}
            for p in plan.problems
        ],
        "history": None if history is None else str(history),
        "recorded": report.recorded,
        "history_errors": report.history_errors,
        "seconds": report.seconds,
        "exit": report.exit_status,
    }


def _by_reason(skipped: Sequence[Skipped]) -> dict[str, int]:
    from reduce.archive.scan import skipped_by_reason  # noqa: PLC0415

    return skipped_by_reason(skipped)


def _mode_dark() -> str:
    from reduce.rawframe import Mode  # noqa: PLC0415

    return Mode.DARK.value


DASK_MISSING = "--scheduler needs Dask: pip install 'megara-dark[archive]'"


@contextlib.contextmanager
def dask_runner(address: str, *, timeout_s: float = 10.0) -> Iterator[Runner]:
    """The workers of the Dask scheduler at ``address`` (``tcp://host:port``).

    Tasks go through ``Client.get_executor(pure=False)``, keyed
    ``megara-dark-<set id>-<random>`` (readable on the dashboard, never
    shared with another run's). A worker lost mid-set: the scheduler runs
    the set again elsewhere (``distributed.scheduler.allowed-failures``);
    past that, the set fails with the scheduler's reason.

    Raises
    ------
    ConfigError
        Dask is not installed, ``address`` is no ``scheme://host:port``, or
        the scheduler did not answer in ``timeout_s``.
    """
    if not re.fullmatch(r"[a-z]+://[^\s/]+:\d+", address):
        raise ConfigError(f"--scheduler {address}: expected tcp://HOST:PORT")
    try:
        import distributed  # noqa: PLC0415  (optional: the archive extra)
    except ImportError:
        raise ConfigError(DASK_MISSING) from None
    connect: Any = distributed.Client  # untyped
    try:
        client = connect(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(
            f"Dask scheduler {address}: cannot connect: {reason}"
        ) from None
    from reduce.archive.task import run_set  # noqa: PLC0415
    from sequencer.engineering.archive import Runner  # noqa: PLC0415

    try:
        executor = client.get_executor(pure=False)

        def submit(task: SetTask) -> Future[SetOutcome]:
            key = f"megara-dark-{task.set_id}-{uuid.uuid4().hex[:8]}"
            future: Future[SetOutcome] = executor.submit(run_set, task, key=key)
            return future

        def capacity() -> int:  # 0 while no worker: one set waits in line
            try:
                return sum(client.nthreads().values())
            except (OSError, TimeoutError):  # the scheduler gone: futures fail
                return 1

        yield Runner(submit, capacity, _cluster_threads(client))
    finally:
        client.close()


def _cluster_threads(client: Any) -> int:
    """Reduction threads for each set on a cluster: the fewest, over its
    hosts, of a host's usable CPUs shared among the sets it runs at once
    (its workers' threads); 1 when the cluster has no worker yet."""
    try:
        cpus = client.run(os.sched_getaffinity, 0)
        workers = client.scheduler_info(n_workers=-1)["workers"]
    except (OSError, TimeoutError, AttributeError, KeyError, TypeError):
        return 1
    per_host: dict[str, list[int]] = {}
    for address, info in workers.items():
        if address in cpus:
            found = per_host.setdefault(str(info["host"]), [0, 0])
            found[0] = len(cpus[address])
            found[1] += int(info["nthreads"])
    shares = [max(1, n // max(1, sets)) for n, sets in per_host.values()]
    return min(shares, default=1)


def _echo(line: str, *, err: bool) -> None:
    with contextlib.suppress(BrokenPipeError):  # `archive | head`: run goes on
        click.echo(line, err=err)


def _interrupted(done: int, total: int, sink: Any) -> None:
    """Say what an interrupted run kept, and how to go on; exit status 130."""
    if sink is not None:
        sink.handle({"event": "interrupted", "done": done, "total": total})
    _echo(
        f"megara-dark: archive interrupted after {done} of {total or '?'} set(s) "
        "(and the sets in progress then, which were let finish): the sets done "
        "are kept; run the same command again to continue",
        err=True,
    )
    raise SystemExit(130)


@click.command()
@click.argument(
    "root",
    type=click.Path(path_type=Path, exists=True, file_okay=False, readable=True),
)
@click.option(
    "--workdir",
    "out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Output folder: OUT/<night YYYY-MM-DD>/obsid<set id>_results/.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=256),
    default=None,
    help="Local worker processes [default: one per CPU]; not with --scheduler.",
)
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    help="Run the sets on the workers of this Dask scheduler (they must see "
    "ROOT and --workdir at the same paths) instead of a local pool.",
)
@click.option(
    "--night-boundary",
    "boundary",
    type=click.FloatRange(min=0.0, max=24.0, max_open=True),
    default=12.0,
    show_default=True,
    help="Hour (UTC) at which one night's calibrations end and the next begin.",
)
@click.option(
    "--gap-s",
    type=click.FloatRange(min=0.0),
    default=900.0,
    show_default=True,
    help="Longest pause, seconds, between two frames of one set.",
)
@click.option(
    "--min-frames",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Fewest frames a set needs.",
)
@click.option(
    "--qc-config",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="QC settings (TOML) for the reduction.",
)
@click.option(
    "--history",
    type=click.Path(path_type=Path, dir_okay=False),
    help="History database for the dark sets' QC [default: that of verify, "
    "megara-dark-runs/history.sqlite].",
)
@click.option("--no-history", is_flag=True, help="Do not record the QC figures.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per event on stdout."
)
@click.option(
    "--log-level",
    type=click.Choice(_LEVELS, case_sensitive=False),
    default="WARNING",
    show_default=True,
)
def archive(
    root: Path,
    out: Path,
    workers: int | None,
    scheduler: str | None,
    boundary: float,
    gap_s: float,
    min_frames: int,
    qc_config: Path | None,
    history: Path | None,
    no_history: bool,
    as_json: bool,
    log_level: str,
) -> None:
    """Reduce every bias and dark set found under ROOT into --workdir.

    Frames are grouped into sets by block, mode, exposure time and time;
    each dark set uses the master bias of its night, else of the nearest
    earlier night. Sets whose products are up to date are skipped. Exit
    status 1 when any set failed.
    """
    from reduce.errors import ReductionError  # noqa: PLC0415
    from reduce.settings import Options  # noqa: PLC0415
    from sequencer.engineering import archive as runner  # noqa: PLC0415
    from sequencer.engineering.limits import DEFAULT_HISTORY  # noqa: PLC0415
    from sequencer.progress import JsonLines  # noqa: PLC0415

    _logging(log_level)
    # Ctrl-C stops the archive even when it was started with SIGINT ignored
    # (a background job of a script, which every child would inherit): the
    # workers ignore it themselves (archive.quiet_interrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if history is not None and no_history:
        raise click.UsageError("give --history PATH or --no-history, not both")
    if workers is not None and scheduler is not None:
        raise click.UsageError(
            "--workers sizes the local pool; with --scheduler the cluster's "
            "workers run the sets (start more of them instead)"
        )
    database = None if no_history else (history or DEFAULT_HISTORY)
    sink = JsonLines(sys.stdout) if as_json else None
    seen = {"done": 0, "total": 0}
    try:
        with contextlib.ExitStack() as stack:
            if scheduler is None:
                pool = runner.local_runner(workers or runner.default_workers())
            else:  # connected before the scan: a wrong address fails fast
                pool = dask_runner(scheduler)
            sets_on = stack.enter_context(pool)
            try:
                Options.from_qc_file(
                    qc_config
                )  # a bad QC file is refused before any work
                plan = runner.plan_archive(
                    root,
                    out,
                    boundary_hour_utc=boundary,
                    gap_s=gap_s,
                    min_frames=min_frames,
                    qc_config=qc_config.absolute() if qc_config else None,
                    threads=sets_on.threads,
                )
            except ReductionError as err:
                raise ConfigError(str(err)) from None

            def emit(event: dict[str, Any]) -> None:
                if event.get("event") == "set_done":
                    seen["done"], seen["total"] = event["done"], event["total"]
                if sink is not None:
                    sink.handle(event)
                line = progress_line(event)
                if line is not None:
                    _echo(line, err=True)

            report = runner.run_archive(plan, sets_on, history=database, emit=emit)
    except KeyboardInterrupt:  # Ctrl-C: every worker got it too
        _interrupted(seen["done"], seen["total"], sink)
    for line in summary_lines(report, database):
        _echo(line, err=as_json)
    if sink is not None:
        sink.handle(summary_event(report, database))
    raise SystemExit(report.exit_status)
