"""Reduction blocks, QC settings and the FITS checksum arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from reduce.blocks import load_blocks
from reduce.errors import InputError, SettingsError
from reduce.fits.checksum import header_length, ones_complement_sum, verify_checksums
from reduce.rawframe import Mode
from reduce.settings import load_qc_config

TWO_BLOCKS = """\
id: b
instrument: MEGARA
mode: MegaraBiasImage
frames: [a.fits, b.fits]
---
id: d
instrument: MEGARA
mode: MegaraDarkImage
frames: [c.fits]
requirements: {master_bias: mb.fits}
"""


def test_blocks_parse_in_order(tmp_path: Path) -> None:
    (tmp_path / "ob.yaml").write_text(TWO_BLOCKS)
    bias, dark = load_blocks(tmp_path / "ob.yaml")
    assert (bias.id, bias.mode, bias.frames) == ("b", Mode.BIAS, ("a.fits", "b.fits"))
    assert (dark.mode, dark.master_bias) == (Mode.DARK, "mb.fits")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no reduction block"),
        ("- 1\n", "expected a mapping"),
        ("id: x\ninstrument: MEGARA\nmode: Foo\nframes: []\n", "key 'mode' is 'Foo'"),
        ("id: x\ninstrument: GTC\nmode: MegaraBiasImage\nframes: []\n", "MEGARA"),
        ("id: x\ninstrument: MEGARA\nmode: MegaraBiasImage\nframes: a\n", "list"),
        (TWO_BLOCKS.replace("id: d", "id: b"), "used twice"),
        (TWO_BLOCKS.replace("frames: [c", "frams: [c"), "unknown key"),
    ],
)
def test_bad_blocks_name_what_is_wrong(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "ob.yaml").write_text(text)
    with pytest.raises(InputError, match=expected) as info:
        load_blocks(tmp_path / "ob.yaml")
    assert "ob.yaml" in str(info.value)


def test_qc_config_overrides_and_rejects_unknown(tmp_path: Path) -> None:
    good = tmp_path / "qc.toml"
    good.write_text("[qc]\ndark_current = { warn = 2.0 }\n[checks]\nleak_floor = 0.5\n")
    qc, checks = load_qc_config(good)
    assert (qc.dark_current.warn, qc.dark_current.bad) == (2.0, 6.0)
    assert checks.leak_floor == 0.5
    bad = tmp_path / "bad.toml"
    bad.write_text("[qc]\nhot_nsigma = 'five'\n")
    with pytest.raises(SettingsError, match=r"bad.toml: qc.hot_nsigma"):
        load_qc_config(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["dettemp", "CCDTEMP1"]', ("DETTEMP", "CCDTEMP1")),
        ('"CCDTEMP0"', "expected a list of header keywords"),
        ("[1]", "expected a list of header keywords"),
        ('["NOT A KEY"]', "expected 1 or more FITS keywords"),
        ("[]", "expected 1 or more FITS keywords"),
    ],
)
def test_temperature_keys_are_configured(
    tmp_path: Path, value: str, expected: tuple[str, ...] | str
) -> None:
    path = tmp_path / "qc.toml"
    path.write_text(f"[checks]\ntemperature_keys = {value}\n")
    if isinstance(expected, tuple):
        assert load_qc_config(path)[1].temperature_keys == expected
    else:
        with pytest.raises(SettingsError, match=expected):
            load_qc_config(path)


def test_min_frames_is_not_a_qc_setting(tmp_path: Path) -> None:
    """One number, one meaning: fewer frames than the minimum is an error."""
    old = tmp_path / "old.toml"
    old.write_text("[qc]\nmin_frames = 3\n")
    with pytest.raises(
        SettingsError, match=r"old.toml: qc.min_frames: not a QC setting"
    ):
        load_qc_config(old)


def test_checksums_agree_with_astropy(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 65535, (40, 30)).astype(np.uint16)
    path = tmp_path / "f.fits"
    fits.PrimaryHDU(data).writeto(path, checksum=True)
    buf = path.read_bytes()
    length = header_length(buf, "f")
    header = fits.getheader(path)
    data_sum = ones_complement_sum(buf[length:])
    assert str(data_sum) == header["DATASUM"]
    assert verify_checksums(header, buf[:length], data_sum, "f") == "verified"
    with pytest.raises(InputError, match="DATASUM mismatch"):
        verify_checksums(header, buf[:length], data_sum ^ 1, "f")
    altered = buf[:length].replace(b"SIMPLE  =", b"SIMPLE  =", 1)[:-4] + b"X   "
    with pytest.raises(InputError, match="CHECKSUM mismatch"):
        verify_checksums(header, altered, data_sum, "f")
