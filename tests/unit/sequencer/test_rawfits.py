"""The raw-frame writer: header, atomic write, verification (no megaradrp)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import resource
import signal
import subprocess
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from drivers.errors import ConfigError
from drivers.interfaces import ShutterState
from reduce.fits import writer
from reduce.geometry import RAW_SHAPE
from reduce.rawframe import partial_name
from sequencer import rawfits
from sequencer.interlock import COVER_CLOSED, InterlockEvidence, Reading
from sequencer.rawfits import (
    FrameMeta,
    FrameWriteError,
    build_header,
    file_name,
    format_date_obs,
    insconf_for,
    parse_file_name,
    verify_raw_frame,
    write_raw_frame,
)
from tests import killpoints

DATE = datetime(2026, 11, 28, 13, 40, 5, 123456, tzinfo=UTC)


#: A frame taken dark: everything read CLOSED.
DARK = InterlockEvidence(
    before=Reading(COVER_CLOSED, ShutterState.CLOSED),
    after=Reading(COVER_CLOSED, ShutterState.CLOSED),
    cover_worst=COVER_CLOSED,
    shutter_max=ShutterState.CLOSED,
    shutter_readings=3,
)


def make_meta(**changes: Any) -> FrameMeta:
    values: dict[str, Any] = {
        "mode": "MegaraDarkImage",
        "exptime_s": 600.0,
        "darktime_s": 601.25,
        "date_obs": DATE,
        "block_id": "dark1",
        "block_uuid": "5b9c1e4e-0d7a-4a51-9a43-7c1f1f0a9b01",
        "frame_index": 2,
        "attempt": 3,
        "uuid": "0c7f5d0e-3f55-4c7c-8f6b-5a1e2d3c4b5a",
        "ccd_temp_start_k": 163.5,
        "ccd_temp_end_k": 163.75,
        "interlock": DARK,
        "valid": True,
        "invalid_reason": None,
        "simulated": True,
        "readout_bad_blocks": 1,
        "readout_rounds": 2,
        "software_version": "0.1.0.dev0",
    }
    values.update(changes)
    return FrameMeta(**values)


def pixels(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 65536, size=RAW_SHAPE, dtype=np.uint16).astype(">u2")
    data[0, 0] = 0
    data[0, 1] = 65535
    data[-1, -1] = 65535
    data[-1, -2] = 0
    return data


# Keywords megaradrp 0.22's checker of IMAGE_DARK requires or constrains
# (megaradrp/schemas/baseimage.json: primary_hdu_values.required,
# dark_hdu_values, bias_hdu_values, raw_hdu_values); checked here without it.
UUID_RE = re.compile(
    r"[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}"
)
DATE_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,4})?"
)


def check_megaradrp_rules(header: Any, mode: str) -> None:
    for key in ("OBSMODE", "DATE-OBS", "INSTRUME", "INSCONF", "EXPTIME", "VPH"):
        assert key in header, key
    assert header["INSTRUME"] == "MEGARA"
    assert header["OBSMODE"] == mode
    # megaradrp's masters inherit it and then fail their own schema
    assert "IMAGETYP" not in header
    assert DATE_RE.fullmatch(header["DATE-OBS"])
    for key in ("INSCONF", "UUID", "BLCKUUID"):
        assert UUID_RE.fullmatch(header[key]), key
    assert isinstance(header["VPH"], str)
    assert header["INSMODE"] in ("LCB", "MOS")
    assert header["READMODE"] in ("NORMAL", "MIRROR")
    assert header["OBSTYPE"] in ("CALIBRATION",)
    for key in ("EXPTIME", "DARKTIME", "GAIN1", "GAIN2", "RDNOISE1", "RDNOISE2"):
        assert isinstance(header[key], float), key
        assert header[key] >= 0, key
    assert isinstance(header["CCDTEMP0"], float)
    assert header["CCDTEMP0"] > 0  # kelvin (megaradrp's schema: minimum 0)
    assert "SENTEMP4" not in header  # another sensor, in C: not ours to write
    if mode == "MegaraBiasImage":
        assert header["EXPTIME"] <= 0
        assert header["DARKTIME"] <= 0


@pytest.mark.parametrize("mode", ["MegaraDarkImage", "MegaraBiasImage"])
def test_header_has_what_megaradrp_checks(mode: str) -> None:
    exptime = 600.0 if mode == "MegaraDarkImage" else 0.0
    header = build_header(make_meta(mode=mode, exptime_s=exptime, darktime_s=0.2))
    check_megaradrp_rules(header, mode)


def test_bias_keeps_the_measured_dark_time_aside() -> None:
    header = build_header(
        make_meta(mode="MegaraBiasImage", exptime_s=0.0, darktime_s=0.37)
    )
    assert header["DARKTIME"] == 0.0
    assert header["DARKMEAS"] == 0.37


def test_header_values() -> None:
    header = build_header(
        make_meta(valid=False, invalid_reason="shutter OPEN after", observer="Ana")
    )
    assert header["DATE-OBS"] == "2026-11-28T13:40:05.123"
    assert header["EXPTIME"] == 600.0
    assert header["DARKTIME"] == 601.25
    assert header["INSCONF"] == "9f3fecbf-376c-47ae-a188-313b7d829104"
    assert header["VPH"] == "LR-B"
    assert header["GAIN1"] == 1.73
    assert header["GAIN2"] == 1.6
    assert header["INTLKOK"] is False
    assert header["INTLKWHY"] == "shutter OPEN after"
    assert header["FRAMEIDX"] == 2
    assert header["ATTEMPT"] == 3
    assert header["SIMULATE"] is True
    assert header["RDBADBLK"] == 1
    assert header["RDROUNDS"] == 2
    assert header["TEMPSTRT"] == 163.5
    assert header["TEMPEND"] == 163.75
    assert header["OBSERVER"] == "Ana"
    assert header["OBJECT"] == "DARK"
    assert all(card.comment for card in header.cards), "every keyword is explained"


def test_every_keyword_is_in_the_module_table() -> None:
    header = build_header(make_meta(observer="x"))
    doc = rawfits.__doc__ or ""
    for key in header:
        assert key in doc, key


def test_date_obs_is_utc_and_millisecond() -> None:
    local = DATE.astimezone(timezone(timedelta(hours=-1)))
    assert format_date_obs(local) == "2026-11-28T13:40:05.123"


def test_insconf_follows_the_date() -> None:
    assert insconf_for(datetime(2020, 1, 1, tzinfo=UTC)).startswith("ca3558e3")
    assert insconf_for(datetime(2025, 11, 1, 12, tzinfo=UTC)).startswith("9f3fecbf")
    with pytest.raises(ConfigError, match="check the clock"):
        insconf_for(datetime(2010, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"mode": "MegaraFlat"}, "mode"),
        ({"exptime_s": -1.0}, "exptime_s"),
        ({"darktime_s": float("nan")}, "darktime_s"),
        ({"mode": "MegaraBiasImage"}, "bias"),
        ({"date_obs": datetime(2026, 1, 1)}, "time zone"),
        ({"block_id": "../x"}, "block id"),
        ({"uuid": "not-a-uuid"}, "uuid"),
        ({"block_uuid": "5B9C1E4E0D7A4A519A437C1F1F0A9B01"}, "canonical"),
        ({"frame_index": 4}, "frame_index"),
        ({"frame_index": 0}, "frame_index"),
        ({"ccd_temp_end_k": 0.0}, "ccd_temp_end_k"),
        ({"valid": False}, "invalid_reason"),
        ({"invalid_reason": "light"}, "invalid_reason"),
        ({"valid": False, "invalid_reason": "  "}, "invalid_reason"),
        ({"readout_rounds": 0}, "readout_rounds"),
        ({"vph": "XX"}, "VPH"),
    ],
)
def test_meta_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_meta(**changes)


def test_meta_is_frozen() -> None:
    meta = make_meta()
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.valid = False  # type: ignore[misc]


def test_non_ascii_text_is_escaped() -> None:
    # the one policy for outside text (reduce.fits.cards.fits_text): recorded,
    # escaped as Python does, never refused
    header = build_header(make_meta(valid=False, invalid_reason="cover 5° open"))
    assert header["INTLKWHY"] == "cover 5\\xb0 open"


def test_file_names() -> None:
    assert file_name("dark1", 3) == "dark1_0003.fits"
    assert file_name("b_2", 12345) == "b_2_12345.fits"
    assert parse_file_name("b_2_0007.fits") == ("b_2", 7)
    assert parse_file_name(partial_name("b_0001.fits")) is None
    assert parse_file_name("b_1.fits") is None
    with pytest.raises(ConfigError):
        file_name("a/b", 1)
    with pytest.raises(ConfigError):
        file_name("a", 0)


def test_round_trip(tmp_path: Path) -> None:
    data = pixels()
    before = data.copy()
    meta = make_meta(valid=False, invalid_reason="x" * 150)
    path = write_raw_frame(tmp_path / file_name("dark1", 3), data, meta)
    assert path == tmp_path / "dark1_0003.fits"
    np.testing.assert_array_equal(data, before)  # the input is not modified
    header = verify_raw_frame(path)
    expected = build_header(meta)
    for key in expected:
        assert header[key] == expected[key], key
    assert header["BITPIX"] == 16
    assert header["BZERO"] == 32768
    assert "CHECKSUM" in header
    assert "DATASUM" in header
    with fits.open(path) as hdul:
        assert len(hdul) == 1
        got = hdul[0].data
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, data)
        assert got.min() == 0
        assert got.max() == 65535
    assert [p.name for p in tmp_path.iterdir()] == ["dark1_0003.fits"]


def test_little_endian_input(tmp_path: Path) -> None:
    data = pixels(3).astype("<u2")
    path = write_raw_frame(tmp_path / "a_0001.fits", data, make_meta())
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, data)


def test_stored_bytes_are_offset_big_endian(tmp_path: Path) -> None:
    data = pixels(5)
    path = write_raw_frame(tmp_path / "a_0001.fits", data, make_meta())
    raw = path.read_bytes()
    nbytes = RAW_SHAPE[0] * RAW_SHAPE[1] * 2
    padded = -(-nbytes // 2880) * 2880
    start = len(raw) - padded
    assert raw[start + nbytes :] == bytes(padded - nbytes)  # zero padding
    stored = np.frombuffer(raw[start : start + nbytes], dtype=">i2")
    np.testing.assert_array_equal(
        stored.astype(np.int32) + 32768, data.ravel().astype(np.int32)
    )


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint16), np.zeros(RAW_SHAPE, np.int16)]
)
def test_refuses_wrong_pixels(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="expected uint16"):
        write_raw_frame(tmp_path / "a_0001.fits", bad, make_meta())
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "a_0001.fits"
    target.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="never overwritten"):
        write_raw_frame(target, pixels(), make_meta())
    assert target.read_bytes() == b"precious"


def test_refuses_a_leftover_partial(tmp_path: Path) -> None:
    (tmp_path / partial_name("a_0001.fits")).write_bytes(b"half")
    with pytest.raises(ConfigError, match="leftover partial"):
        write_raw_frame(tmp_path / "a_0001.fits", pixels(), make_meta())
    assert not (tmp_path / "a_0001.fits").exists()


class Crash(Exception):
    pass


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_crash_leaves_no_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    seen: list[bool] = []
    partial = tmp_path / partial_name("a_0001.fits")

    def crash(*args: object, **kwargs: object) -> None:
        seen.append(partial.exists())
        raise Crash(where)

    if where == "write":
        monkeypatch.setattr(writer, "write_image", crash)
    elif where == "fsync":
        monkeypatch.setattr("reduce.rawframe.os.fsync", crash)
    else:
        monkeypatch.setattr("reduce.rawframe.os.replace", crash)
    with pytest.raises(Crash):
        write_raw_frame(tmp_path / "a_0001.fits", pixels(), make_meta())
    assert seen == [True], "the crash happened with the temporary file on disk"
    assert list(tmp_path.iterdir()) == []


def test_verify_detects_a_flipped_byte(tmp_path: Path) -> None:
    path = write_raw_frame(tmp_path / "a_0001.fits", pixels(), make_meta())
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match=r"a_0001\.fits\[PRIMARY\]: DATASUM mismatch"):
        verify_raw_frame(path)


def test_verify_detects_a_changed_header(tmp_path: Path) -> None:
    path = write_raw_frame(tmp_path / "a_0001.fits", pixels(), make_meta())
    raw = path.read_bytes().replace(
        b"INTLKOK =                    T", b"INTLKOK =                    F"
    )
    path.write_bytes(raw)
    with pytest.raises(ConfigError, match="CHECKSUM mismatch"):
        verify_raw_frame(path)


@pytest.mark.parametrize("keep", [0.5, -2880, -1])
def test_verify_detects_truncation(tmp_path: Path, keep: float) -> None:
    path = write_raw_frame(tmp_path / "a_0001.fits", pixels(), make_meta())
    raw = path.read_bytes()
    cut = int(len(raw) * keep) if keep > 0 else len(raw) + int(keep)
    path.write_bytes(raw[:cut])
    with pytest.raises(ConfigError, match=r"a_0001\.fits"):
        verify_raw_frame(path)


def test_verify_detects_wrong_shape(tmp_path: Path) -> None:
    path = tmp_path / "small.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.uint16)).writeto(path, checksum=True)
    with pytest.raises(ConfigError, match="shape"):
        verify_raw_frame(path)


def test_verify_detects_extra_hdus(tmp_path: Path) -> None:
    path = tmp_path / "two.fits"
    fits.HDUList(
        [fits.PrimaryHDU(np.zeros(RAW_SHAPE, np.uint16)), fits.ImageHDU()]
    ).writeto(path, checksum=True)
    with pytest.raises(ConfigError, match="2 HDUs"):
        verify_raw_frame(path)


def test_verify_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nothing\.fits"):
        verify_raw_frame(tmp_path / "nothing.fits")


def test_header_is_json_friendly() -> None:
    # the reduction copies header values into task.json
    header = build_header(make_meta())
    json.dumps({key: header[key] for key in header})
    assert uuid.UUID(header["UUID"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"OBSMODE": "MegaraFiberFlatImage"}, "OBSMODE"),
        ({"INSTRUME": "OSIRIS"}, "INSTRUME"),
        ({}, "no CHECKSUM"),
    ],
)
def test_verify_refuses_foreign_frames(
    tmp_path: Path, change: dict[str, str], match: str
) -> None:
    header = fits.Header.fromstring(build_header(make_meta()).tostring())
    header.update(change)
    path = tmp_path / "foreign.fits"
    # no checksum unless the header was changed (then the checksum is valid)
    fits.PrimaryHDU(np.zeros(RAW_SHAPE, np.uint16), header=header).writeto(
        path, checksum=bool(change)
    )
    with pytest.raises(ConfigError, match=match):
        verify_raw_frame(path)


# -- writes the file system refuses, and the fault-injection hook ---------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
        (OSError(errno.EFBIG, os.strerror(errno.EFBIG)), "File too large"),
        (OSError("35245056 requested and 1000 written"), "disk is full"),
    ],
)
def test_refused_write_is_one_error_and_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, reason: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(writer, "write_image", refuse)
    with pytest.raises(FrameWriteError) as caught:
        write_raw_frame(tmp_path / "a_0001.fits", pixels(), make_meta())
    message = str(caught.value)
    assert message.startswith("a_0001.fits: cannot write the frame in ")
    assert reason in message
    assert "--resume" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_file_size_limit_in_a_real_process(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: the kernel refuses the write part-way (EFBIG)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    done = subprocess.run(
        killpoints.command("write-frame", str(tmp_path / "a_0001.fits")),
        env=killpoints.environment({}),
        capture_output=True,
        text=True,
        preexec_fn=limit,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "FrameWriteError: a_0001.fits: cannot write the frame" in done.stdout
    assert "file-size limit" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_write_killed_part_way_leaves_only_a_partial_of_that_size(
    tmp_path: Path,
) -> None:
    env = killpoints.environment({killpoints.FITS_ENV: "a_0001.fits:123456"})
    done = subprocess.run(
        killpoints.command("write-frame", str(tmp_path / "a_0001.fits")),
        env=env,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL
    partial = tmp_path / partial_name("a_0001.fits")
    assert [p.name for p in tmp_path.iterdir()] == [partial.name]
    assert partial.stat().st_size == 123456


def test_a_kill_point_for_another_frame_leaves_this_one_whole(tmp_path: Path) -> None:
    env = killpoints.environment({killpoints.FITS_ENV: "b_0001.fits:10"})
    done = subprocess.run(
        killpoints.command("write-frame", str(tmp_path / "a_0001.fits")),
        env=env,
        check=False,
    )
    assert done.returncode == 0
    verify_raw_frame(tmp_path / "a_0001.fits")
    assert [p.name for p in tmp_path.iterdir()] == ["a_0001.fits"]
