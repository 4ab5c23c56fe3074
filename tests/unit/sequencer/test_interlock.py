"""The interlock evidence: its header strings, literally, and their parsing."""

from __future__ import annotations

import pytest
from astropy.io import fits

from drivers.interfaces import ShutterState
from sequencer.interlock import (
    COVER_CLOSED,
    CoverReading,
    HalfState,
    InterlockEvidence,
    Reading,
)
from tests.unit.sequencer.test_rawfits import DARK

LEFT_OPEN = CoverReading(HalfState.OPEN, HalfState.CLOSED)
LEAKY = InterlockEvidence(
    before=Reading(COVER_CLOSED, ShutterState.CLOSED),
    after=Reading(
        CoverReading(HalfState.MOVING, HalfState.TIMED_OUT), ShutterState.OPEN
    ),
    cover_worst=LEFT_OPEN,
    shutter_max=ShutterState.FAULT,
    shutter_readings=2,
)


def test_header_cards_of_a_dark_frame_are_the_contract() -> None:
    assert DARK.header_cards() == [
        ("COVBEF", "left=CLOSED right=CLOSED", "Cover before integration"),
        ("COVAFT", "left=CLOSED right=CLOSED", "Cover after integration"),
        ("COVWORST", "CLOSED", "Worst cover reading during it"),
        ("SHUTBEF", "CLOSED", "Shutter before integration"),
        ("SHUTAFT", "CLOSED", "Shutter after integration"),
        ("SHUTMAX", "CLOSED", "Most open shutter state seen"),
    ]
    assert DARK.problems() == []


def test_a_leaky_frame_renders_every_reading() -> None:
    assert LEAKY.strings() == {
        "cover_before": "left=CLOSED right=CLOSED",
        "cover_after": "left=MOVING right=TIMED_OUT",
        "cover_worst": "left=OPEN right=CLOSED",
        "shutter_before": "CLOSED",
        "shutter_after": "OPEN",
        "shutter_max": "FAULT",
    }
    assert LEAKY.problems() == [
        "after integration: left=MOVING right=TIMED_OUT, shutter OPEN",
        "during integration a cover half read left=OPEN right=CLOSED",
        "controller saw the shutter FAULT during integration",
    ]
    assert not LEAKY.cover_closed
    assert not LEAKY.shutter_closed


@pytest.mark.parametrize("evidence", [DARK, LEAKY], ids=["dark", "leaky"])
def test_a_header_reads_back_as_written(evidence: InterlockEvidence) -> None:
    header = fits.Header([(k, v, c) for k, v, c in evidence.header_cards()])
    back = InterlockEvidence.from_header(header)
    assert back.strings() == evidence.strings()
    assert back.shutter_readings is None  # the header does not carry it


def test_a_journal_record_reads_back_whole() -> None:
    assert InterlockEvidence.parse(LEAKY.journal_fields()) == LEAKY


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("cover_before", "left=CLOSED"),
        ("cover_after", "left=AJAR right=CLOSED"),
        ("cover_worst", ""),
        ("shutter_max", "SHUT"),
    ],
)
def test_bad_strings_are_refused(field: str, text: str) -> None:
    values = {**DARK.strings(), field: text}
    with pytest.raises(ValueError, match="expected"):
        InterlockEvidence.parse(values)


def test_a_header_without_the_cards_is_refused() -> None:
    with pytest.raises(ValueError, match="COVBEF"):
        InterlockEvidence.from_header(fits.Header())
