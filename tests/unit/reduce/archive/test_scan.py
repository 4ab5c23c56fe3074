"""Finding raw biases and darks in an archive from their headers alone.

Most frames here are full-size files whose data unit is a hole
(``truncate`` past the header): the reader sees a 35 MB raw frame, the disk
holds one header block. One frame is written whole by astropy, the oracle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from reduce.archive import scan
from reduce.archive.scan import RawEntry, Skipped, scan_archive, scan_file
from reduce.errors import InputError
from reduce.geometry import RAW_SHAPE
from reduce.rawframe import Mode

DATA_BYTES = RAW_SHAPE[0] * RAW_SHAPE[1] * 2
"""A raw frame's data unit without its padding, bytes."""


def padded(nbytes: int) -> int:
    return -(-nbytes // 2880) * 2880


def content(**overrides: Any) -> dict[str, Any]:
    """A MEGARA dark's content cards; ``None`` removes a card."""
    cards: dict[str, Any] = {
        "INSTRUME": "MEGARA",
        "OBSMODE": "MegaraDarkImage",
        "DATE-OBS": "2026-11-28T01:00:00.0",
        "EXPTIME": 3600.0,
        "UUID": "0b6c2e4e-4b8f-4c54-9a53-1f0c2c7d8e01",
        "BLCKUUID": "5f1c2a3b-0000-4000-8000-000000000001",
    }
    for key, value in overrides.items():
        name = "DATE-OBS" if key == "DATE_OBS" else key
        if value is None:
            cards.pop(name, None)
        else:
            cards[name] = value
    return cards


def write_frame(
    path: Path,
    cards: dict[str, Any] | None = None,
    *,
    shape: tuple[int, int] = RAW_SHAPE,
    cut: int = 0,
) -> Path:
    """A raw frame's header (astropy) and a hole for its data, ``cut`` bytes short."""
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = 16
    header["NAXIS"] = 2
    header["NAXIS1"] = shape[1]
    header["NAXIS2"] = shape[0]
    header["BSCALE"] = 1
    header["BZERO"] = 32768
    for key, value in (content() if cards is None else cards).items():
        header[key] = value
    text = header.tostring().encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        stream.write(text)
        stream.truncate(len(text) + padded(shape[0] * shape[1] * 2) - cut)
    return path


def only(found: RawEntry | Skipped) -> Skipped:
    assert isinstance(found, Skipped), found
    return found


def test_frames_found_at_any_depth_with_each_extension(tmp_path: Path) -> None:
    write_frame(tmp_path / "a.fits")
    write_frame(tmp_path / "n1" / "b.FIT", content(OBSMODE="MegaraBiasImage"))
    write_frame(tmp_path / "n1" / "deep" / "er" / "c.fts", content(SIMULATE=True))
    write_frame(tmp_path / "n2" / "d.fits.gz")  # not a FITS name: not considered
    write_frame(tmp_path / "n2" / "e.txt")
    (tmp_path / "n2" / "notes.md").write_text("night log")

    entries, skipped = scan_archive(tmp_path)

    assert skipped == []
    assert [e.path.relative_to(tmp_path).as_posix() for e in entries] == [
        "a.fits",
        "n1/b.FIT",
        "n1/deep/er/c.fts",
    ]
    first = entries[0]
    assert first.mode is Mode.DARK
    assert entries[1].mode is Mode.BIAS
    assert first.date_obs == datetime(2026, 11, 28, 1, 0, 0, tzinfo=UTC)
    assert first.exptime_s == 3600.0
    assert first.uuid == "0b6c2e4e-4b8f-4c54-9a53-1f0c2c7d8e01"
    assert first.block_uuid == "5f1c2a3b-0000-4000-8000-000000000001"
    assert [e.simulated for e in entries] == [False, False, True]
    info = os.stat(first.path)
    assert first.file_id == (info.st_dev, info.st_ino)
    assert first.size == info.st_size > DATA_BYTES


def test_a_frame_written_by_astropy(tmp_path: Path) -> None:
    path = tmp_path / "real.fits"
    header = fits.Header()
    for key, value in content(UUID=None, BLCKUUID=None).items():
        header[key] = value
    pixels = np.zeros(RAW_SHAPE, dtype=np.uint16)
    fits.PrimaryHDU(pixels, header).writeto(path)

    found = scan_file(path)

    assert isinstance(found, RawEntry), found
    assert found.mode is Mode.DARK
    assert found.uuid is None
    assert found.block_uuid is None
    assert found.size == path.stat().st_size


def test_only_headers_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(3):
        write_frame(tmp_path / f"f{k}.fits")
    asked: list[int] = []
    pread = os.pread

    def counting(fd: int, length: int, offset: int) -> bytes:
        asked.append(length)
        return pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", counting)
    monkeypatch.setattr(os, "preadv", None)  # reading pixels would fail loudly
    entries, _ = scan_archive(tmp_path)

    assert len(entries) == 3
    assert sum(asked) <= 3 * 5 * 2880  # a few header blocks per file, no data


def test_non_fits_content_with_a_fits_name(tmp_path: Path) -> None:
    path = tmp_path / "log.fits"
    path.write_text("not a FITS file at all\n" * 200)

    skipped = only(scan_file(path))

    assert skipped.category == scan.NOT_FITS
    assert "not a FITS file" in skipped.reason


def test_another_instrument(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "osiris.fits", content(INSTRUME="OSIRIS"))

    skipped = only(scan_file(path))

    assert skipped.category == scan.NOT_MEGARA
    assert skipped.reason == "INSTRUME='OSIRIS'; expected 'MEGARA'"


def test_a_science_frame_is_not_a_bias_or_dark(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "flat.fits", content(OBSMODE="MegaraFiberFlatImage"))

    skipped = only(scan_file(path))

    assert skipped.category == scan.NOT_BIAS_OR_DARK
    assert skipped.reason.startswith(
        "OBSMODE 'MegaraFiberFlatImage': not a bias or dark"
    )


@pytest.mark.parametrize("cut", [1, 2880, DATA_BYTES])
def test_a_truncated_frame(tmp_path: Path, cut: int) -> None:
    path = write_frame(tmp_path / "cut.fits", cut=cut)

    skipped = only(scan_file(path))

    assert skipped.category == scan.TRUNCATED
    assert "truncated" in skipped.reason
    assert str(path.stat().st_size) in skipped.reason  # the size seen


def test_a_header_cut_before_its_end(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "cut.fits")
    with path.open("r+b") as stream:
        stream.truncate(1000)

    skipped = only(scan_file(path))

    assert skipped.category == scan.TRUNCATED


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.fits"
    path.touch()

    assert only(scan_file(path)).category == scan.TRUNCATED


def test_a_frame_cut_to_a_whole_block_of_the_real_copy(tmp_path: Path) -> None:
    # A copy interrupted at a block boundary: astropy still opens the header.
    path = tmp_path / "half.fits"
    header = fits.Header()
    for key, value in content().items():
        header[key] = value
    fits.PrimaryHDU(np.zeros(RAW_SHAPE, np.uint16), header).writeto(path)
    with path.open("r+b") as stream:
        stream.truncate(path.stat().st_size // 2 // 2880 * 2880)

    assert only(scan_file(path)).category == scan.TRUNCATED


def test_a_fifo_is_never_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)

    entries, skipped = scan_archive(tmp_path)  # would block if it were opened

    assert entries == []
    assert [(s.path, s.category) for s in skipped] == [(fifo, scan.NOT_REGULAR)]
    assert "FIFO" in skipped[0].reason


def test_a_permission_error_is_skipped_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = write_frame(tmp_path / "locked.fits")
    write_frame(tmp_path / "ok.fits")
    real_open = os.open

    def refusing(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    entries, skipped = scan_archive(tmp_path)

    assert [e.path.name for e in entries] == ["ok.fits"]
    assert [(s.path, s.category) for s in skipped] == [(locked, scan.UNREADABLE)]
    assert "Permission denied" in skipped[0].reason


def test_an_unlistable_folder_is_skipped_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_frame(tmp_path / "ok" / "a.fits")
    locked = tmp_path / "locked"
    write_frame(locked / "b.fits")
    real_scandir = os.scandir

    def refusing(path: Any) -> Any:
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)  # what os.walk lists with
    entries, skipped = scan_archive(tmp_path)

    assert [e.path.name for e in entries] == ["a.fits"]
    assert [(s.path, s.category) for s in skipped] == [(locked, scan.UNREADABLE)]
    assert "cannot list folder: Permission denied" in skipped[0].reason


def test_a_file_that_vanished(tmp_path: Path) -> None:
    skipped = only(scan_file(tmp_path / "gone.fits"))

    assert skipped.category == scan.UNREADABLE
    assert "not found" in skipped.reason


def test_a_folder_named_like_a_frame_is_searched(tmp_path: Path) -> None:
    write_frame(tmp_path / "night.fits" / "a.fits")

    entries, skipped = scan_archive(tmp_path)

    assert [e.path.relative_to(tmp_path).as_posix() for e in entries] == [
        "night.fits/a.fits"
    ]
    assert skipped == []


def test_folder_links_followed_once_and_loops_end(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_frame(archive / "n1" / "a.fits")
    (archive / "n1" / "up").symlink_to(archive)  # a loop
    elsewhere = write_frame(tmp_path / "elsewhere" / "b.fits")
    (archive / "n2").symlink_to(elsewhere.parent)

    entries, skipped = scan_archive(archive)

    assert [e.path.relative_to(archive).as_posix() for e in entries] == [
        "n1/a.fits",
        "n2/b.fits",
    ]
    assert skipped == []


def test_a_hard_link_has_the_same_file_id(tmp_path: Path) -> None:
    first = write_frame(tmp_path / "a.fits")
    os.link(first, tmp_path / "b.fits")

    entries, _ = scan_archive(tmp_path)

    assert len(entries) == 2
    assert entries[0].file_id == entries[1].file_id


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"DATE_OBS": None}, "no DATE-OBS; expected YYYY-MM-DDThh:mm:ss"),
        ({"DATE_OBS": "28/11/26"}, "DATE-OBS='28/11/26'; expected"),
        ({"DATE_OBS": "2026-11-28"}, "DATE-OBS='2026-11-28'; expected"),
        ({"DATE_OBS": "2026-13-28T01:00:00"}, "is no date"),
        ({"EXPTIME": None}, "no EXPTIME"),
        ({"EXPTIME": "long"}, "EXPTIME='long'; expected a number of seconds"),
        ({"EXPTIME": -1.0}, "EXPTIME=-1.0; expected"),
        ({"SIMULATE": "yes"}, "SIMULATE='yes'; expected T or F"),
        ({"UUID": 12}, "UUID=12; expected a string"),
        ({"OBSMODE": None}, "no OBSMODE"),
    ],
)
def test_bad_headers(tmp_path: Path, override: dict[str, Any], expected: str) -> None:
    path = write_frame(tmp_path / "bad.fits", content(**override))

    skipped = only(scan_file(path))

    assert skipped.category == scan.BAD_HEADER
    assert expected in skipped.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T01:00:00", datetime(2026, 11, 28, 1, tzinfo=UTC)),
        ("2026-11-28T01:00:00.5", datetime(2026, 11, 28, 1, 0, 0, 500000, UTC)),
        (
            "2026-11-28T23:59:59.123456789",
            datetime(2026, 11, 28, 23, 59, 59, 123456, UTC),
        ),
        ("2026-11-28T01:00:00.250Z", datetime(2026, 11, 28, 1, 0, 0, 250000, UTC)),
    ],
)
def test_date_obs_forms(tmp_path: Path, text: str, expected: datetime) -> None:
    path = write_frame(tmp_path / "f.fits", content(DATE_OBS=text))

    found = scan_file(path)

    assert isinstance(found, RawEntry), found
    assert found.date_obs == expected
    assert found.date_obs.utcoffset() is not None


@pytest.mark.parametrize(
    ("shape", "cards"),
    [
        ((2056, 4196), content()),
        (RAW_SHAPE, content(BZERO=0)),
    ],
)
def test_a_wrong_layout(
    tmp_path: Path, shape: tuple[int, int], cards: dict[str, Any]
) -> None:
    path = write_frame(tmp_path / "odd.fits", cards, shape=shape)

    skipped = only(scan_file(path))

    assert skipped.category == scan.WRONG_LAYOUT
    assert "expected" in skipped.reason


def test_blank_uuids_are_none(tmp_path: Path) -> None:
    path = write_frame(tmp_path / "f.fits", content(UUID="", BLCKUUID="  "))

    found = scan_file(path)

    assert isinstance(found, RawEntry), found
    assert found.uuid is None
    assert found.block_uuid is None


def test_a_root_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a folder"):
        scan_archive(tmp_path / "missing")


def test_skipped_counted_by_category(tmp_path: Path) -> None:
    make: list[Callable[[], object]] = [
        lambda: write_frame(tmp_path / "a.fits", content(INSTRUME="OSIRIS")),
        lambda: write_frame(tmp_path / "b.fits", content(INSTRUME="OSIRIS")),
        lambda: write_frame(tmp_path / "c.fits", content(OBSMODE="MegaraMosImage")),
        lambda: write_frame(tmp_path / "d.fits", cut=100),
        lambda: write_frame(tmp_path / "e.fits", content(EXPTIME=None)),
        lambda: (tmp_path / "f.fits").write_text("x" * 3000),
        lambda: write_frame(tmp_path / "g.fits"),
    ]
    for step in make:
        step()

    entries, skipped = scan_archive(tmp_path)

    assert [e.path.name for e in entries] == ["g.fits"]
    assert scan.skipped_by_reason(skipped) == {
        scan.NOT_FITS: 1,
        scan.TRUNCATED: 1,
        scan.BAD_HEADER: 1,
        scan.NOT_MEGARA: 2,
        scan.NOT_BIAS_OR_DARK: 1,
    }
    assert list(scan.skipped_by_reason(skipped)) == [
        scan.NOT_FITS,
        scan.TRUNCATED,
        scan.BAD_HEADER,
        scan.NOT_MEGARA,
        scan.NOT_BIAS_OR_DARK,
    ]


def test_an_unknown_category_counts_as_other() -> None:
    found = [Skipped(Path("x.fits"), "why"), Skipped(Path("y.fits"), "w", "new")]

    assert scan.skipped_by_reason(found) == {scan.OTHER: 2}
