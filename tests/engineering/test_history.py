"""The history database: records, replacement, and schema migrations."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.errors import ConfigError
from sequencer.engineering.figures import DarkSet, Figure
from sequencer.engineering.history import SCHEMA_VERSION, History, schema_version
from sequencer.engineering.limits import VerifySettings
from sequencer.engineering.verify import Verdict, verify

# Version 1 of the schema, as megara-dark first wrote it: kept here literally so
# that a change to the migrations cannot silently change what "v1" means.
V1_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
CREATE TABLE dark_sets (
    id INTEGER PRIMARY KEY, product_uuid TEXT NOT NULL, block TEXT NOT NULL,
    date_obs TEXT NOT NULL, verified_at TEXT NOT NULL, ccd_temperature_k REAL,
    exptime_s REAL NOT NULL, n_frames INTEGER NOT NULL, verdict TEXT NOT NULL,
    folder TEXT NOT NULL);
CREATE TABLE figures (
    set_id INTEGER NOT NULL REFERENCES dark_sets(id) ON DELETE CASCADE,
    name TEXT NOT NULL, amplifier INTEGER, value REAL, unit TEXT NOT NULL);
CREATE INDEX figures_by_name ON figures(name);
INSERT INTO dark_sets VALUES
    (1, 'uuid-a', 'dark1', '2026-01-01T00:00:00', '2026-01-01T01:00:00', 163.0,
     900.0, 5, 'PASS', 'runs/a'),
    (2, 'uuid-a', 'dark1', '2026-01-01T00:00:00', '2026-01-02T01:00:00', 163.0,
     900.0, 5, 'PASS', 'runs/a'),
    (3, 'uuid-b', 'dark2', '2026-02-01T00:00:00', '2026-02-01T01:00:00', 168.0,
     900.0, 5, 'FAIL', 'runs/b');
INSERT INTO figures VALUES
    (1, 'dark_current', 1, 1.5, 'e-/pix/h'),
    (2, 'dark_current', 1, 2.0, 'e-/pix/h'),
    (3, 'dark_current', 1, 7.0, 'e-/pix/h'),
    (3, 'cover_close_time', NULL, NULL, 's');
"""


def dark_set(uuid: str, date: str, temperature: float, current: float) -> DarkSet:
    dark = DarkSet(
        folder=Path("runs") / uuid,
        block_id="dark",
        product_uuid=uuid,
        date_obs=date,
        exptime_s=900.0,
        n_frames=5,
        qa="GOOD",
        qa_reasons=[],
        simulated=True,
    )
    dark.figures = [
        Figure("dark_current", 1, current, "e-/pix/h"),
        Figure("dark_current", 2, current * 1.01, "e-/pix/h"),
        Figure("ccd_temperature", None, temperature, "K"),
    ]
    return dark


def verdict_of(dark: DarkSet) -> Verdict:
    return verify(dark, VerifySettings(), now=datetime(2026, 3, 1, tzinfo=UTC))


def test_new_database_is_at_the_current_version(tmp_path: Path) -> None:
    with History(tmp_path / "sub" / "h.sqlite") as db:
        assert schema_version(db.conn) == SCHEMA_VERSION
        assert db.count() == 0


def test_record_and_series(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as db:
        db.record(verdict_of(dark_set("u2", "2026-02-02T00:00:00", 168.0, 7.0)))
        db.record(verdict_of(dark_set("u1", "2026-02-01T00:00:00", 163.0, 2.0)))
        points = db.series("dark_current")
    assert [(p.date_obs[:10], p.amplifier, p.value) for p in points] == [
        ("2026-02-01", 1, 2.0),
        ("2026-02-01", 2, 2.02),
        ("2026-02-02", 1, 7.0),
        ("2026-02-02", 2, 7.07),
    ]
    assert points[0].temperature_k == 163.0
    assert points[2].limit_max == 5.0
    assert all(p.simulated for p in points)


def test_verifying_a_product_again_replaces_its_record(tmp_path: Path) -> None:
    with History(tmp_path / "h.sqlite") as db:
        db.record(verdict_of(dark_set("u1", "2026-02-01T00:00:00", 163.0, 2.0)))
        db.record(verdict_of(dark_set("u1", "2026-02-01T00:00:00", 163.0, 2.5)))
        assert db.count() == 1
        values = [p.value for p in db.series("dark_current") if p.amplifier == 1]
    assert values == [2.5]


def test_upgrade_from_version_1_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA)
    conn.commit()
    conn.close()
    with History(path) as db:
        assert schema_version(db.conn) == SCHEMA_VERSION
        # The duplicate record of uuid-a is gone, keeping the latest (id 2).
        assert db.count() == 2
        points = db.series("dark_current")
        assert [(p.block, p.value, p.temperature_k) for p in points] == [
            ("dark1", 2.0, 163.0),
            ("dark2", 7.0, 168.0),
        ]
        columns = {r[1] for r in db.conn.execute("PRAGMA table_info(figures)")}
        assert {"limit_min", "limit_max", "status"} <= columns
        status = db.conn.execute("SELECT DISTINCT status FROM figures").fetchall()
        assert status == [("unchecked",)]
        # The new unique index holds: recording uuid-b again replaces it.
        db.record(verdict_of(dark_set("uuid-b", "2026-02-01T00:00:00", 168.0, 6.5)))
        assert db.count() == 2
    with History(path) as db:  # opening a current database changes nothing
        assert schema_version(db.conn) == SCHEMA_VERSION
        assert db.count() == 2


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        f"CREATE TABLE schema_version (version INTEGER);"
        f"INSERT INTO schema_version VALUES ({SCHEMA_VERSION + 1});"
    )
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="newer than this megara-dark understands"):
        History(path)


def test_a_file_that_is_not_sqlite_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("these are not the droids\n" * 100, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        History(path)
    assert "not a usable history database" in str(err.value)
    assert "\n" not in str(err.value)
