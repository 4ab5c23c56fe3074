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

from reduce.fits.cards import Header, make_card
from reduce.productfile import ProductFile
from reduce.products import ImagePlan, dq_table, image_plan

SHAPE = (64, 96)  # rows of 384 bytes (float32), 192 (int16), 96 (uint8)


def _cards(**values: object) -> Header:
    return Header([make_card(k, v) for k, v in values.items()])


def _layout(header: Header) -> list[ImagePlan | bytes]:
    return [
        image_plan("PRIMARY", np.float32, SHAPE, header.cards),
        image_plan("VARIANCE", np.float32, SHAPE),
        image_plan("MAP", np.int16, SHAPE),
        image_plan("DQ", np.uint8, SHAPE),
        dq_table(),
    ]


def _primary(layout: list[ImagePlan | bytes]) -> Header:
    plan = layout[0]
    assert isinstance(plan, ImagePlan)
    return plan.header.copy()


def _images(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "PRIMARY": rng.normal(100, 5, SHAPE).astype(np.float32),
        "VARIANCE": rng.gamma(2, 3, SHAPE).astype(np.float32),
        "MAP": rng.integers(0, 25, SHAPE).astype(np.int16),
        "DQ": rng.integers(0, 8, SHAPE).astype(np.uint8),
    }


def test_bands_in_any_order_from_threads_make_a_valid_file(tmp_path: Path) -> None:
    provisional = _cards(OBSMODE="MegaraDarkImage", QAFLAG="GOOD")
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
    final = _primary(_layout(provisional))
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


def test_a_header_that_outgrows_its_room_moves_the_data(tmp_path: Path) -> None:
    path = tmp_path / "master_bias.fits"
    out = ProductFile(path, _layout(_cards(QAFLAG="GOOD")))
    images = _images(5)
    for name, data in images.items():
        out.write_image(name, data)
    final = _primary(_layout(_cards(QAFLAG="BAD")))
    for k in range(200):  # far more than the room left for QA reasons
        final[f"QAR{k}"] = f"excluded frame {k}"
    grown = out.finish(final)
    assert grown > 0
    assert grown % 2880 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["master_bias.fits"]
    with fits.open(path, checksum=True) as back:
        for hdu in back:
            assert hdu.verify_checksum() == 1, hdu.name
            assert hdu.verify_datasum() == 1, hdu.name
        for name, data in images.items():
            np.testing.assert_array_equal(back[name].data, data)
        assert back[0].header["QAR199"] == "excluded frame 199"


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    out = ProductFile(tmp_path / "master_dark.fits", _layout(Header()))
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
    out = ProductFile(tmp_path / "m.fits", _layout(Header()))
    out.write_image("PRIMARY", _images(2)["PRIMARY"])  # 24 KiB, no finish yet
    flushed.wait()  # before finish(): a flusher that never runs hangs here
    assert out.finish(_primary(_layout(Header()))) == 0
    with fits.open(tmp_path / "m.fits", checksum=True) as back:
        np.testing.assert_array_equal(back[0].data, _images(2)["PRIMARY"])
