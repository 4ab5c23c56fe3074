"""A master written band by band, headers last (reduce.productfile)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from pytest_mock import MockerFixture

from reduce.combine import Combined
from reduce.geometry import AMP1, AMP2, TRIMMED_SHAPE
from reduce.productfile import MasterSink, NoRoomForHeader, ProductFile
from reduce.products import dq_table

SHAPE = (64, 96)  # rows of 384 bytes (float32), 192 (int16), 96 (uint8)


def _layout(header: fits.Header) -> fits.HDUList:
    def blank(dtype: type[np.generic]) -> np.ndarray:
        return np.broadcast_to(np.zeros((), dtype), SHAPE)

    return fits.HDUList(
        [
            fits.PrimaryHDU(blank(np.float32), header=header),
            fits.ImageHDU(blank(np.float32), name="VARIANCE"),
            fits.ImageHDU(blank(np.int16), name="MAP"),
            fits.ImageHDU(blank(np.uint8), name="DQ"),
            dq_table(),
        ]
    )


def _images(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "PRIMARY": rng.normal(100, 5, SHAPE).astype(np.float32),
        "VARIANCE": rng.gamma(2, 3, SHAPE).astype(np.float32),
        "MAP": rng.integers(0, 25, SHAPE).astype(np.int16),
        "DQ": rng.integers(0, 8, SHAPE).astype(np.uint8),
    }


def test_bands_in_any_order_from_threads_make_a_valid_file(tmp_path: Path) -> None:
    provisional = fits.Header([("OBSMODE", "MegaraDarkImage"), ("QAFLAG", "GOOD")])
    path = tmp_path / "master_dark.fits"
    out = ProductFile(path, _layout(provisional))
    images = _images(3)
    bands = [(name, r0) for name in images for r0 in range(0, SHAPE[0], 5)]
    order = np.random.default_rng(4).permutation(len(bands))
    with ThreadPoolExecutor(3) as pool:
        for future in [
            pool.submit(
                out.write_rows,
                bands[i][0],
                bands[i][1],
                images[bands[i][0]][bands[i][1] : bands[i][1] + 5],
            )
            for i in order
        ]:
            future.result()
    assert not path.exists()  # nothing in place before the headers are
    final = _layout(provisional)[0].header.copy()
    final["QAFLAG"] = "PARTIAL"
    for k in range(1, 6):  # reasons added by the QA: they use the room left
        final[f"QAREAS{k}"] = f"reason number {k}, " + "long " * 20
    out.finish(final)
    assert [p.name for p in tmp_path.iterdir()] == ["master_dark.fits"]
    with fits.open(path, checksum=True) as back:
        assert [h.name for h in back] == [*images, "DQBITS"]
        for hdu in back:
            assert hdu.verify_checksum() == 1
            assert hdu.verify_datasum() == 1
        for name, data in images.items():
            np.testing.assert_array_equal(back[name].data, data)
        assert back[0].header["QAFLAG"] == "PARTIAL"
        assert back[0].header["QAREAS5"].startswith("reason number 5")
        assert back[0].header["OBSMODE"] == "MegaraDarkImage"
        assert back["DQBITS"].data["NAME"][0] == "HOT_PIXEL"


def test_a_header_that_outgrows_its_room_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master_bias.fits"
    out = ProductFile(path, _layout(fits.Header([("QAFLAG", "GOOD")])))
    final = _layout(fits.Header([("QAFLAG", "BAD")]))[0].header.copy()
    for k in range(200):
        final[f"QAR{k}"] = "excluded frame"
    with pytest.raises(NoRoomForHeader):
        out.finish(final)
    assert not path.exists()
    out.abort()
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    out = ProductFile(tmp_path / "master_dark.fits", _layout(fits.Header()))
    out.write_image("PRIMARY", _images(1)["PRIMARY"])
    out.abort()
    out.abort()  # idempotent
    assert list(tmp_path.iterdir()) == []


def test_written_pages_are_flushed_while_writing(
    tmp_path: Path, mocker: MockerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("reduce.productfile.FLUSH_BYTES", 4096)
    flushed = threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        real(fd)
        flushed.set()

    mocker.patch("reduce.productfile.os.fdatasync", side_effect=fdatasync)
    out = ProductFile(tmp_path / "m.fits", _layout(fits.Header()))
    out.write_image("PRIMARY", _images(2)["PRIMARY"])  # 24 KiB, no finish yet
    flushed.wait()  # before finish(): a flusher that never runs hangs here
    out.finish(_layout(fits.Header())[0].header)
    with fits.open(tmp_path / "m.fits", checksum=True) as back:
        np.testing.assert_array_equal(back[0].data, _images(2)["PRIMARY"])


def test_master_sink_subtracts_the_bias_and_derives_the_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    median = rng.normal(1000, 3, TRIMMED_SHAPE).astype(np.float32)
    bias = rng.normal(990, 1, TRIMMED_SHAPE).astype(np.float32)
    layout = fits.HDUList(
        [
            fits.PrimaryHDU(np.broadcast_to(np.float32(0), TRIMMED_SHAPE)),
            fits.ImageHDU(
                np.broadcast_to(np.float32(0), TRIMMED_SHAPE), name="VARIANCE"
            ),
            fits.ImageHDU(np.broadcast_to(np.int16(0), TRIMMED_SHAPE), name="MAP"),
            fits.ImageHDU(
                np.broadcast_to(np.float32(0), TRIMMED_SHAPE), name="DARKRATE"
            ),
        ]
    )
    out = ProductFile(tmp_path / "master_dark.fits", layout)
    combined = Combined(
        median.copy(),
        np.ones(TRIMMED_SHAPE, np.float32),
        np.full(TRIMMED_SHAPE, 7, np.int16),
    )
    sink = MasterSink(out, bias, np.full(TRIMMED_SHAPE, 0.5, np.float32), 100.0)
    for r0 in range(0, TRIMMED_SHAPE[0], 1000):  # a band straddles the amplifiers
        sink(r0, min(r0 + 1000, TRIMMED_SHAPE[0]), combined)
    out.finish(layout[0].header)
    with fits.open(tmp_path / "master_dark.fits") as back:
        expected = median - bias
        np.testing.assert_array_equal(back[0].data, expected)
        np.testing.assert_array_equal(combined.data, expected)  # in place
        assert np.all(back["VARIANCE"].data == 1.5)
        rate = back["DARKRATE"].data
        for amp in (AMP1, AMP2):
            np.testing.assert_allclose(
                rate[amp.trimmed_rows],
                expected[amp.trimmed_rows] * amp.gain / 100.0,
                rtol=1e-6,
            )
