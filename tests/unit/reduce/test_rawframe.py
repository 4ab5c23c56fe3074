"""The raw frame's CCD temperature: the CCD's keywords, units from their definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reduce.fits.cards import Header, make_card
from reduce.frames import inspect_frame
from reduce.geometry import RAW_SHAPE
from reduce.rawframe import CCD_TEMPERATURE_KEYS, Mode, ccd_temperature
from reduce.synthetic import raw_header, write_raw


def header(*cards: tuple[str, object, str]) -> Header:
    return Header(make_card(*card) for card in cards)


#: A real MEGARA frame's instrument sensor: degrees C, not the CCD.
SENSOR = ("SENTEMP4", 12.5, "[C] sensor temperature")


def test_the_ccd_keyword_in_kelvin() -> None:
    found = header(SENSOR, ("CCDTEMP0", 163.2, "[K] CCD temperature"))
    assert ccd_temperature(found) == pytest.approx(163.2)


def test_a_sensor_of_something_else_is_never_the_ccd() -> None:
    # The frame of the review: SENTEMP4 = 12.5 C read as 12.5 K made every
    # frame of a warm detector a "light leak".
    assert ccd_temperature(header(SENSOR)) is None
    assert "SENTEMP4" not in CCD_TEMPERATURE_KEYS


def test_the_search_order_is_the_configured_one() -> None:
    both = header(("CCDTEMP1", 170.0, ""), ("TEMPSTRT", 163.0, "[K] at start"))
    assert ccd_temperature(both) == 163.0  # TEMPSTRT first by default
    assert ccd_temperature(both, ("CCDTEMP1", "TEMPSTRT")) == 170.0


def test_a_configured_keyword_in_celsius_is_converted() -> None:
    found = header(("DETTEMP", -110.0, "[C] detector temperature"))
    assert ccd_temperature(found, ("DETTEMP",)) == pytest.approx(163.15)
    assert ccd_temperature(found) is None  # not one of the CCD's by default


def test_a_stated_unit_wins_over_the_keyword_definition() -> None:
    found = header(("CCDTEMP0", -110.0, "[deg C] CCD"))
    assert ccd_temperature(found) == pytest.approx(163.15)


@pytest.mark.parametrize(
    "card",
    [
        ("DETTEMP", 163.0, "detector temperature"),  # unit neither known nor said
        ("CCDTEMP0", 0.0, "[K]"),  # not a temperature in kelvin
        ("CCDTEMP0", True, ""),  # a logical, not a number
        ("CCDTEMP0", "163", ""),  # text
    ],
)
def test_a_value_without_a_usable_unit_is_unknown(
    card: tuple[str, object, str],
) -> None:
    assert ccd_temperature(header(card), ("CCDTEMP0", "DETTEMP")) is None


def test_inspect_frame_reads_the_ccd_not_the_sensor(tmp_path: Path) -> None:
    counts = np.full(RAW_SHAPE, 1500, dtype=np.uint16)
    cards = raw_header(900.0)
    cards["SENTEMP4"] = (12.5, "[C] sensor temperature")
    path = tmp_path / "sensor_only.fits"
    write_raw(path, counts, cards)
    assert inspect_frame(path, Mode.DARK).temperature is None
    cards["CCDTEMP2"] = (162.5, "[K] CCD temperature")
    write_raw(path, counts, cards)
    assert inspect_frame(path, Mode.DARK).temperature == pytest.approx(162.5)
