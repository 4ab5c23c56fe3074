"""The history database: every verified dark set's QC figures, in SQLite.

Schema (version :data:`SCHEMA_VERSION`; ``schema_version`` holds one row)::

    dark_sets(id, product_uuid UNIQUE, block, date_obs, verified_at,
              ccd_temperature_k, exptime_s, n_frames, verdict, folder,
              simulated, source, night, archive)
    figures(set_id -> dark_sets.id, name, amplifier (NULL: whole set),
            value (NULL: not measured), unit, limit_min, limit_max, status)

Migrations are applied in order, each in its own transaction, when a database
is opened; a database newer than this program is refused rather than guessed
at. Version 1 had neither limits nor status per figure, nor the simulated flag
and source per set, and allowed one product to be recorded twice; version 2
adds them and keeps only the latest record of each product. Version 3 adds
the observing night (``YYYY-MM-DD``) and the raw archive of a set that
``megara-dark archive`` reduced (NULL for the others). Verifying the same
master dark again replaces its record.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from drivers.errors import ConfigError
from sequencer.engineering.verify import Verdict

log = logging.getLogger(__name__)

#: Migrations: MIGRATIONS[k] takes a database from version k to k + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0)",
        """CREATE TABLE dark_sets (
            id INTEGER PRIMARY KEY,
            product_uuid TEXT NOT NULL,
            block TEXT NOT NULL,
            date_obs TEXT NOT NULL,
            verified_at TEXT NOT NULL,
            ccd_temperature_k REAL,
            exptime_s REAL NOT NULL,
            n_frames INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            folder TEXT NOT NULL)""",
        """CREATE TABLE figures (
            set_id INTEGER NOT NULL REFERENCES dark_sets(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            amplifier INTEGER,
            value REAL,
            unit TEXT NOT NULL)""",
        "CREATE INDEX figures_by_name ON figures(name)",
    ),
    (
        "ALTER TABLE figures ADD COLUMN limit_min REAL",
        "ALTER TABLE figures ADD COLUMN limit_max REAL",
        "ALTER TABLE figures ADD COLUMN status TEXT NOT NULL DEFAULT 'unchecked'",
        "ALTER TABLE dark_sets ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE dark_sets ADD COLUMN source TEXT NOT NULL DEFAULT 'verify'",
        """DELETE FROM figures WHERE set_id NOT IN (
            SELECT MAX(id) FROM dark_sets GROUP BY product_uuid)""",
        """DELETE FROM dark_sets WHERE id NOT IN (
            SELECT MAX(id) FROM dark_sets GROUP BY product_uuid)""",
        "CREATE UNIQUE INDEX dark_sets_by_product ON dark_sets(product_uuid)",
    ),
    (
        "ALTER TABLE dark_sets ADD COLUMN night TEXT",
        "ALTER TABLE dark_sets ADD COLUMN archive TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class Point:
    """One value of a figure in the history."""

    date_obs: str
    temperature_k: float | None
    amplifier: int | None
    value: float
    unit: str
    block: str
    simulated: bool
    limit_min: float | None
    limit_max: float | None


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0: empty, no tables)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(
    conn: sqlite3.Connection, target: int = SCHEMA_VERSION, where: str = "history"
) -> int:
    """Bring the schema up to ``target``, one transaction per step.

    Raises
    ------
    ConfigError
        The database is newer than this program knows.
    """
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise ConfigError(
            f"{where}: schema version {current} is newer than this megara-dark "
            f"understands ({SCHEMA_VERSION}); upgrade megara-dark"
        )
    while current < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[current]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (current + 1,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        current += 1
        log.info("%s: schema migrated to version %d", where, current)
    return current


class History:
    """The history database at ``path`` (created, or migrated, on opening).

    Raises
    ------
    ConfigError
        The file cannot be opened as SQLite, or its schema is unknown.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self.conn.execute("PRAGMA foreign_keys = ON")
            migrate(self.conn, where=str(self.path))
        except sqlite3.DatabaseError as err:
            raise ConfigError(
                f"{self.path}: not a usable history database ({err}); expected a "
                "SQLite file written by megara-dark, or a new path"
            ) from err
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot open ({err})") from err

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record(
        self,
        verdict: Verdict,
        source: str = "verify",
        *,
        night: str | None = None,
        archive: str | None = None,
    ) -> int:
        """Store (or replace) a verified set's figures; return its row id.

        ``night`` (``YYYY-MM-DD``) and ``archive`` (the raw archive's root)
        are those of a set reduced from an archive; None for the others.
        """
        d = verdict.dark
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "DELETE FROM dark_sets WHERE product_uuid = ?", (d.product_uuid,)
            )
            cursor = self.conn.execute(
                """INSERT INTO dark_sets (product_uuid, block, date_obs, verified_at,
                    ccd_temperature_k, exptime_s, n_frames, verdict, folder,
                    simulated, source, night, archive)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    d.product_uuid, d.block_id, d.date_obs,
                    verdict.verified_at.isoformat(), d.temperature_k, d.exptime_s,
                    d.n_frames, "PASS" if verdict.passed else "FAIL",
                    str(d.folder.resolve()), int(d.simulated), source,
                    night, archive,
                ),
            )  # fmt: skip
            set_id = int(cursor.lastrowid or 0)
            self.conn.executemany(
                """INSERT INTO figures (set_id, name, amplifier, value, unit,
                    limit_min, limit_max, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    (set_id, c.figure.name, c.figure.amplifier, c.figure.value,
                     c.figure.unit, c.limit.min, c.limit.max, c.status)
                    for c in verdict.checks
                ],
            )  # fmt: skip
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return set_id

    def series(self, figure: str, simulated: bool | None = None) -> list[Point]:
        """Every measured value of ``figure``, oldest observation first."""
        query = """SELECT s.date_obs, s.ccd_temperature_k, f.amplifier, f.value,
                f.unit, s.block, s.simulated, f.limit_min, f.limit_max
            FROM figures f JOIN dark_sets s ON s.id = f.set_id
            WHERE f.name = ? AND f.value IS NOT NULL"""
        args: list[object] = [figure]
        if simulated is not None:
            query += " AND s.simulated = ?"
            args.append(int(simulated))
        query += " ORDER BY s.date_obs, f.amplifier"
        rows: Sequence[tuple[object, ...]] = self.conn.execute(query, args).fetchall()
        return [
            Point(
                date_obs=str(r[0]),
                temperature_k=None if r[1] is None else float(str(r[1])),
                amplifier=None if r[2] is None else int(str(r[2])),
                value=float(str(r[3])),
                unit=str(r[4]),
                block=str(r[5]),
                simulated=bool(r[6]),
                limit_min=None if r[7] is None else float(str(r[7])),
                limit_max=None if r[8] is None else float(str(r[8])),
            )
            for r in rows
        ]

    def count(self) -> int:
        """Dark sets recorded."""
        row = self.conn.execute("SELECT COUNT(*) FROM dark_sets").fetchone()
        return int(row[0])
