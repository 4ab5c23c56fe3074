"""Making a run folder's frames agree with its journal before a resume.

A resumed block may find, in its data folder, what the journal does not
say: a frame renamed into place just before a crash (not journaled yet), a
write cut short (``.<name>.partial``), a journaled frame damaged or deleted
since, or a file planted there (a copy of another frame under a frame's
name, another run's frame, a FIFO). :func:`resume_block` settles each case
so that a resume can always finish:

* a frame of this block whose file is complete (checksums) and whose header
  says it is this frame (``BLOCKID``, ``ATTEMPT``, ``BLCKUUID`` of this run's
  block, the ``UUID`` the journal recorded, no other frame's ``UUID``) is
  kept, or adopted (``frame_adopted``) when the journal did not know it;
* anything else under a frame's name (damaged, foreign, not a regular file)
  is moved aside to ``<name>.damaged`` (kept, never deleted), recorded as
  ``frame_discarded`` with the reason, and its attempt is taken again; a
  journaled frame whose file is gone is recorded the same way;
* leftovers of the run's own writers (``.<name>.partial`` frames,
  ``.<product>.<pid>.tmp`` products) are deleted: the run folder's lock
  guarantees that no writer of this run is alive.

No path is opened before ``lstat`` says it is a regular file, so a FIFO or a
device under a frame's name cannot make the resume wait.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from drivers.errors import ConfigError
from reduce.rawframe import partial_name
from sequencer.journal import BlockState, Journal, RunState, apply_record
from sequencer.rawfits import parse_file_name, verify_raw_frame

log = logging.getLogger(__name__)

_PARTIAL = partial_name("x")[2:]  # ".partial"
_DAMAGED = ".damaged"


def orphan_frames(state: RunState, block_id: str, datadir: Path) -> list[Path]:
    """Frame files of ``block_id`` in ``datadir`` that the journal does not know."""
    known = state.block(block_id)
    found: list[tuple[int, Path]] = []
    for path in datadir.iterdir():
        parsed = parse_file_name(path.name)
        if parsed is None or parsed[0] != block_id:
            continue
        if parsed[1] not in known.written_attempts:
            found.append((parsed[1], path))
    return [path for _, path in sorted(found)]


def check_frame(
    path: Path,
    *,
    block_id: str,
    attempt: int,
    block_uuid: str | None,
    uuid: str | None,
) -> dict[str, Any]:
    """The header of ``path`` if it is this frame; else ConfigError says why.

    ``block_uuid`` and ``uuid`` (None: not known) are compared with the
    header's ``BLCKUUID`` and ``UUID``.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{path.name}: missing") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path.name}: not a regular file; a frame is one")
    header = verify_raw_frame(path)
    seen = {
        "BLOCKID": header.get("BLOCKID"),
        "ATTEMPT": header.get("ATTEMPT"),
        "BLCKUUID": header.get("BLCKUUID"),
        "UUID": header.get("UUID"),
    }
    expected: dict[str, Any] = {"BLOCKID": block_id, "ATTEMPT": attempt}
    if block_uuid is not None:
        expected["BLCKUUID"] = block_uuid
    if uuid is not None:
        expected["UUID"] = uuid
    wrong = [
        f"{k}={seen[k]!r} (expected {v!r})" for k, v in expected.items() if seen[k] != v
    ]
    if wrong:
        raise ConfigError(
            f"{path.name}: not this run's frame of block {block_id} attempt "
            f"{attempt}: {', '.join(wrong)}"
        )
    return dict(header)


def _move_aside(path: Path) -> str:
    """Rename ``path`` to a free ``<name>.damaged[.k]``; return the new name."""
    aside = path.with_name(path.name + _DAMAGED)
    k = 1
    while os.path.lexists(aside):
        k += 1
        aside = path.with_name(f"{path.name}{_DAMAGED}.{k}")
    os.replace(path, aside)
    return aside.name


def _discard(
    journal: Journal, state: RunState, block_id: str, attempt: int, path: Path, why: str
) -> None:
    moved = _move_aside(path) if os.path.lexists(path) else None
    log.warning(
        "%s: %s %s: %s; it will be taken again",
        block_id,
        "moved aside" if moved else "lost",
        path.name,
        why,
    )
    record = journal.append(
        "frame_discarded",
        block=block_id,
        attempt=attempt,
        file=path.name,
        moved_to=moved,
        reason=why,
    )
    apply_record(state, record)


def clean_leftovers(workdir: Path, datadir: Path, block_id: str) -> None:
    """Delete partial frame writes of ``block_id`` and stale product temporaries."""
    for leftover in sorted(datadir.iterdir()):
        name = leftover.name
        if not (name.startswith(".") and name.endswith(_PARTIAL)):
            continue
        parsed = parse_file_name(name[1 : -len(_PARTIAL)])
        if parsed is not None and parsed[0] == block_id:
            log.warning("%s: removing the leftover partial write %s", block_id, name)
            leftover.unlink()
    products = workdir / f"obsid{block_id}_results"
    stales = [*workdir.glob(".reduction.yaml.*.tmp")]
    if products.is_dir():
        stales += products.glob(".*.tmp")
    for stale in stales:
        if stat.S_ISREG(os.lstat(stale).st_mode):
            log.warning("%s: removing the stale temporary %s", block_id, stale.name)
            stale.unlink()


def _records_of(journal: Journal, block_id: str) -> dict[int, dict[str, Any]]:
    """The frame_written / frame_adopted record of each attempt of the block."""
    found: dict[int, dict[str, Any]] = {}
    for record in journal.records():
        if record.get("block") == block_id and record["event"] in (
            "frame_written",
            "frame_adopted",
        ):
            found.setdefault(int(record["attempt"]), record)
    return found


def resume_block(
    journal: Journal,
    state: RunState,
    block_id: str,
    datadir: Path,
    *,
    block_uuid: str | None = None,
) -> BlockState:
    """Make the journal and ``datadir`` agree for one block before resuming it.

    See the module docstring; returns the block's state: carry on at
    ``expected_next_attempt`` and ``next_frame_index``.
    """
    clean_leftovers(datadir.parent, datadir, block_id)
    block = state.block(block_id)
    records = _records_of(journal, block_id)
    uuids: set[str] = set()
    for name in [*block.valid_files, *block.invalid_files]:
        parsed = parse_file_name(name)
        attempt = parsed[1] if parsed is not None else -1
        path = datadir / name
        try:
            header = check_frame(
                path,
                block_id=block_id,
                attempt=attempt,
                block_uuid=block_uuid,
                uuid=records.get(attempt, {}).get("uuid"),
            )
            _unique(header, uuids, name)
        except ConfigError as err:
            _discard(journal, state, block_id, attempt, path, str(err))
    for path in orphan_frames(state, block_id, datadir):
        parsed = parse_file_name(path.name)
        if parsed is None:  # orphan_frames yields frame names only
            continue
        _adopt(journal, state, block_id, path, parsed[1], block_uuid, uuids)
    return state.block(block_id)


def _unique(header: dict[str, Any], uuids: set[str], name: str) -> None:
    uuid = str(header.get("UUID"))
    if uuid in uuids:
        raise ConfigError(f"{name}: UUID {uuid} is another frame's; a copy")
    uuids.add(uuid)


def _adopt(
    journal: Journal,
    state: RunState,
    block_id: str,
    path: Path,
    attempt: int,
    block_uuid: str | None,
    uuids: set[str],
) -> None:
    try:
        header = check_frame(
            path, block_id=block_id, attempt=attempt, block_uuid=block_uuid, uuid=None
        )
        _unique(header, uuids, path.name)
    except ConfigError as err:
        _discard(journal, state, block_id, attempt, path, str(err))
        return
    valid = bool(header.get("INTLKOK", False))
    log.warning(
        "%s: adopting %s, written before a crash but not journaled", block_id, path.name
    )
    record = journal.append(
        "frame_adopted",
        block=block_id,
        attempt=attempt,
        file=path.name,
        valid=valid,
        reason=str(header.get("INTLKWHY", "")),
        uuid=header.get("UUID"),
    )
    apply_record(state, record)


def exposures_done(state: RunState, datadir: Path) -> int:
    """Attempts that finished, in every block: the CCD frame counter to resume at.

    An attempt finished if the journal records its frame (written, adopted,
    discarded) or its failure (``frame_invalid``), or its frame file is in
    ``datadir`` (also as ``<name>.damaged``) though not yet journaled. An
    exposure a crash cut short finished nothing: the resumed run takes it
    again, as the same frame.
    """
    finished: set[tuple[str, int]] = set()
    for block in state.blocks.values():
        attempts = block.written_attempts | set(block.failed_attempts)
        attempts |= block.discarded_attempts
        finished |= {(block.block, a) for a in attempts}
    if datadir.is_dir():
        for path in datadir.iterdir():
            base = path.name.split(_DAMAGED)[0]
            parsed = parse_file_name(base)
            if parsed is not None:
                finished.add(parsed)
    return len(finished)
