"""One calibration set of an archive reduced, in a worker process.

:func:`run_set` takes a :class:`SetTask` (plain, picklable values: it is
sent to a worker process) and returns a :class:`SetOutcome`; it never
raises for a problem of the set itself (unusable frames, a bad master bias,
a full disk): the outcome is ``failed`` with the message.

Idempotent
    A set whose ``OUT/<night>/obsid<ID>_results/task.json`` records the same
    inputs (the SHA-256 of every frame, in order), the same master bias (its
    product UUID), the same QC settings and the same megara-dark version is
    ``skipped`` ("up to date"): nothing is written.

Atomic
    The set is reduced into ``OUT/<night>/.partial-<ID>.<host>.<pid>.<tag>/``
    (``tag``: 8 random hex digits; the host and tag keep the names of workers
    on different hosts apart, the folder being shared) and its results
    folder renamed into place once complete. An outdated results folder is
    first renamed aside (the same name and ``-old``), the new one renamed
    in, the night folder fsynced, then the old one deleted. A crash (a
    worker killed, on any host) leaves ``.partial-*`` folders only, never
    half a results folder; the set's next run deletes its own first, and a
    new ``megara-dark archive`` run all of them (:func:`clean_partials`).

The pairing note ("master bias of 2026-11-27 (nearest earlier night)") is
written into the products: a line of ``processing.log`` and task.json's
``archive`` object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from reduce.batch import reduce_block
from reduce.documents import write_json
from reduce.errors import InputError, ReductionError
from reduce.fits.reader import read_header
from reduce.io import fsync_dir
from reduce.pipeline import Result
from reduce.products import software_version
from reduce.rawframe import Mode
from reduce.settings import Options

log = logging.getLogger(__name__)

PARTIAL = ".partial-"
"""Prefix of the temporary folders of a set under way (or of a crash)."""

Status = Literal["reduced", "skipped", "failed"]


@dataclass(frozen=True)
class SetTask:
    """One calibration set to reduce (picklable: sent to a worker process).

    Attributes
    ----------
    set_id
        The set's id (products in ``out_dir/obsid<set_id>_results``).
    night
        Its observing night.
    mode
        ``MegaraBiasImage`` or ``MegaraDarkImage``.
    frames
        The raw frames, in order.
    bias_product
        The master bias for a dark set (None: reduced without one).
    out_dir
        ``OUT/<night as YYYY-MM-DD>``.
    note
        Where the master bias comes from, or why there is none (``""``: the
        set's own night); written into the products.
    qc_config
        QC settings file (TOML; None: the defaults).
    threads
        Reduction threads.
    min_frames
        Fewest usable frames the reduction accepts.
    """

    set_id: str
    night: date
    mode: str
    frames: tuple[Path, ...]
    bias_product: Path | None
    out_dir: Path
    note: str = ""
    qc_config: Path | None = None
    threads: int = 1
    min_frames: int = 3

    @property
    def results(self) -> Path:
        """``out_dir/obsid<set_id>_results``."""
        return self.out_dir / f"obsid{self.set_id}_results"

    @property
    def product(self) -> Path:
        """The master's file in :attr:`results`."""
        return self.results / f"{Mode(self.mode).product}.fits"


@dataclass(frozen=True)
class SetOutcome:
    """What became of one set.

    Attributes
    ----------
    set_id
        The set.
    status
        ``reduced``, ``skipped`` (up to date) or ``failed``.
    reason
        Why skipped or failed (``""`` when reduced).
    product
        The master's file (None when failed).
    qa
        QA flag (None when failed).
    qa_reasons
        Why the flag is not GOOD.
    seconds
        Wall time in :func:`run_set`, s.
    peak_rss_mib
        Peak resident memory of the worker process so far, MiB.
    """

    set_id: str
    status: Status
    reason: str
    product: Path | None
    qa: str | None
    qa_reasons: tuple[str, ...]
    seconds: float
    peak_rss_mib: float

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as strings)."""
        doc = dataclasses.asdict(self)
        doc["product"] = None if self.product is None else str(self.product)
        doc["qa_reasons"] = list(self.qa_reasons)
        return doc


def run_set(task: SetTask) -> SetOutcome:
    """Reduce one set unless up to date (see the module docstring).

    Never raises for the set's own problems (:class:`ReductionError`,
    :class:`OSError`): the outcome is ``failed`` with the message.
    """
    start = time.perf_counter()

    def outcome(status: Status, reason: str, **found: Any) -> SetOutcome:
        return SetOutcome(
            set_id=task.set_id,
            status=status,
            reason=reason,
            product=found.get("product"),
            qa=found.get("qa"),
            qa_reasons=tuple(found.get("qa_reasons", ())),
            seconds=round(time.perf_counter() - start, 3),
            peak_rss_mib=_peak_rss_mib(),
        )

    try:
        options = _options(task)
        recorded = up_to_date(task, options)
        if recorded is not None:
            qa = recorded.get("qa", {})
            return outcome(
                "skipped",
                "up to date",
                product=task.product,
                qa=str(qa.get("flag")),
                qa_reasons=[str(r) for r in qa.get("reasons", [])],
            )
        result = _reduce(task, options)
    except (ReductionError, OSError) as err:
        log.info("%s: failed: %s", task.set_id, err)
        return outcome("failed", str(err))
    return outcome(
        "reduced",
        "",
        product=task.product,
        qa=result.qa,
        qa_reasons=result.reasons,
    )


def _options(task: SetTask) -> Options:
    return Options.from_qc_file(
        task.qc_config, threads=task.threads, min_frames=task.min_frames
    )


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _settings(options: Options) -> dict[str, Any]:
    """The settings that change a product, as task.json's ``parameters``
    records them (JSON round trip: tuples become lists)."""
    values = {
        "method": options.method,
        "min_frames": options.min_frames,
        "exact": options.exact,
        "thresholds": dataclasses.asdict(options.thresholds),
        "checks": dataclasses.asdict(options.checks),
    }
    loaded: dict[str, Any] = json.loads(json.dumps(values))
    return loaded


def _bias_uuid(path: Path) -> str | None:
    """The UUID of a master bias, from its header (None: unreadable)."""
    try:
        value = read_header(path, "master bias").get("UUID")
    except (InputError, OSError):
        return None
    return None if value is None else str(value)


def up_to_date(task: SetTask, options: Options) -> dict[str, Any] | None:
    """The task.json of the set's results when they are up to date, else None.

    Up to date: the master exists and task.json records the same frame
    SHA-256s (in order), master bias UUID (or none), settings and
    megara-dark version.
    """
    path = task.results / "task.json"
    if not path.is_file() or not task.product.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        inputs = recorded["inputs"]
        hashes = [str(f["sha256"]) for f in inputs["frames"]]
        bias = inputs.get("master_bias")
        params = recorded["parameters"]
        version = recorded["software"]["megara-dark"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.info("%s: unreadable, reduced again (%s)", path, err)
        return None
    if version != software_version():
        return None
    if any(params.get(k) != v for k, v in _settings(options).items()):
        return None
    if (bias is None) != (task.bias_product is None):
        return None
    if task.bias_product is not None and (
        not isinstance(bias, dict) or bias.get("uuid") != _bias_uuid(task.bias_product)
    ):
        return None
    if hashes != [sha256_file(p) for p in task.frames]:
        return None
    return dict(recorded)


def clean_partials(out_dir: Path, set_id: str | None = None) -> list[Path]:
    """Delete the ``.partial-*`` folders a crash left in ``out_dir``.

    With ``set_id``, only that set's (other sets may be under way).
    Returns the folders deleted.
    """
    if set_id is None:
        pattern = re.compile(re.escape(PARTIAL) + r".+")
    else:  # set ids hold no "."; "-<pid>": the names of earlier versions
        pattern = re.compile(re.escape(PARTIAL + set_id) + r"(\..+|-\d+(-old)?)")
    removed: list[Path] = []
    try:
        names = sorted(os.listdir(out_dir))
    except FileNotFoundError:
        return removed
    for name in names:
        if pattern.fullmatch(name):
            log.warning("%s: left by an interrupted run; deleted", out_dir / name)
            shutil.rmtree(out_dir / name, ignore_errors=True)
            removed.append(out_dir / name)
    return removed


def partial_name(set_id: str) -> str:
    """``.partial-<set id>.<host>.<pid>.<tag>``: unique across the hosts
    that share the output folder, and across pid reuse."""
    host = re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname().split(".")[0]) or "host"
    return f"{PARTIAL}{set_id}.{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def _reduce(task: SetTask, options: Options) -> Result:
    """Reduce into a ``.partial-`` folder, then rename the results into place."""
    task.out_dir.mkdir(parents=True, exist_ok=True)
    clean_partials(task.out_dir, task.set_id)
    work = task.out_dir / partial_name(task.set_id)
    try:
        result = reduce_block(
            block_id=task.set_id,
            mode=task.mode,
            frames=task.frames,
            master_bias=task.bias_product,
            workdir=work,
            options=options,
        )
        _add_note(task, result.folder)
        fsync_dir(result.folder)
        _replace(result.folder, task.results, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _note(task: SetTask) -> str:
    if task.note:
        return task.note
    if task.bias_product is None and task.mode == Mode.DARK.value:
        return "no master bias"
    if task.bias_product is not None:
        return f"master bias of the same night ({task.night:%Y-%m-%d})"
    return ""


def _add_note(task: SetTask, folder: Path) -> None:
    """The archive's facts into processing.log and task.json."""
    note = _note(task)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    line = f"{stamp} archive: set {task.set_id}, night {task.night:%Y-%m-%d}"
    with open(folder / "processing.log", "a", encoding="utf-8") as stream:
        stream.write(line + (f"; {note}" if note else "") + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    path = folder / "task.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["archive"] = {
        "set_id": task.set_id,
        "night": f"{task.night:%Y-%m-%d}",
        "note": note,
    }
    write_json(path, document)


def _replace(new: Path, final: Path, work: Path) -> None:
    """Rename ``new`` to ``final``, an existing ``final`` renamed aside first."""
    parent = final.parent
    aside = work.with_name(work.name + "-old")
    had_old = final.exists()
    if had_old:
        os.rename(final, aside)
    os.rename(new, final)
    fsync_dir(parent)
    if had_old:
        shutil.rmtree(aside, ignore_errors=True)


def _peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
