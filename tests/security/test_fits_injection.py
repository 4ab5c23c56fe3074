"""Header values that come from the hardware cannot inject FITS cards.

The cover and shutter read-backs and the reason a frame is invalid reach the
raw header as text. A hostile (or broken) controller could send line breaks,
an 80-column padded ``END`` card, a fake ``SIMPLE`` card, NUL bytes, non-ASCII
or a kilobyte of text: the written file must still hold exactly the cards
of a benign frame, each value inside its own card, and pass verification.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reduce.geometry import RAW_SHAPE
from sequencer.rawfits import (
    MAX_TEXT,
    FrameMeta,
    build_header,
    verify_raw_frame,
    write_raw_frame,
)
from tests.unit.sequencer.test_rawfits import DARK

CARD = 80
#: A value crafted to end the header early and start a forged one.
FORGED = (
    "CLOSED'\n"
    + "END".ljust(CARD)
    + "SIMPLE  =                    F / forged".ljust(CARD)
)
HOSTILE = [
    FORGED,
    "left=CLOSED\r\nINTLKOK =                    T",
    "\x00" * 10 + "NUL",
    "é" * 40 + "\u2028" + "中文",
    "'" * 200,
    "x" * 1000,
    " " * 90 + "END",
]


def meta(**changes: Any) -> FrameMeta:
    values: dict[str, Any] = {
        "mode": "MegaraDarkImage",
        "exptime_s": 10.0,
        "darktime_s": 10.5,
        "date_obs": datetime(2024, 3, 1, 2, 3, 4, tzinfo=UTC),
        "block_id": "dark1",
        "block_uuid": "5b9c1e4e-0d7a-4a51-9a43-7c1f1f0a9b01",
        "frame_index": 1,
        "attempt": 1,
        "uuid": "0c7f5d0e-3f55-4c7c-8f6b-5a1e2d3c4b5a",
        "ccd_temp_start_k": 163.15,
        "ccd_temp_end_k": 163.2,
        "interlock": DARK,
        "valid": False,
        "invalid_reason": "shutter OPEN after",
        "simulated": True,
        "readout_bad_blocks": 0,
        "readout_rounds": 1,
        "software_version": "0.1.0.dev0",
    }
    values.update(changes)
    return FrameMeta(**values)


#: Free text from the hardware and the operator. The interlock readings
#: (COVBEF ... SHUTMAX) are typed (sequencer.interlock): no text reaches them.
HARDWARE_TEXT = ["invalid_reason"]


def hostile_meta(value: str) -> FrameMeta:
    return meta(**dict.fromkeys(HARDWARE_TEXT, value), observer=value, object=value)


def raw_cards(path: Path) -> list[str]:
    """The header's 80-column cards as stored, up to and including END."""
    cards = []
    with path.open("rb") as handle:
        while True:
            block = handle.read(2880)
            assert len(block) == 2880, "header ended without an END card"
            for i in range(0, 2880, CARD):
                card = block[i : i + CARD].decode("ascii")  # ASCII or it fails
                cards.append(card)
                if card == "END".ljust(CARD):
                    return cards


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_stays_in_its_card(value: str) -> None:
    benign = build_header(meta(observer="someone", object="DARK"))
    header = build_header(hostile_meta(value))
    assert list(header.keys()) == list(benign.keys())
    text = header.tostring()
    image = [text[i : i + CARD] for i in range(0, len(text), CARD)]
    image = image[: image.index("END".ljust(CARD)) + 1]
    assert [card[:8].rstrip() for card in image] == [*benign.keys(), "END"]
    for key in ("INTLKWHY", "OBSERVER", "OBJECT"):
        text = header[key]
        assert text.isascii()
        assert text.isprintable()
        assert len(text) + text.count("'") <= MAX_TEXT


def test_a_forged_end_card_in_a_written_frame(tmp_path: Path) -> None:
    """The file holds exactly the expected cards and passes verification."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(1000, 1100, size=RAW_SHAPE, dtype=np.uint16)
    benign = write_raw_frame(
        tmp_path / "benign_0001.fits", pixels, meta(observer="someone")
    )
    hostile = write_raw_frame(
        tmp_path / "dark1_0001.fits", pixels, hostile_meta(FORGED)
    )
    expected = [card[:8] for card in raw_cards(benign)]
    cards = raw_cards(hostile)
    assert [card[:8] for card in cards] == expected
    assert sum(card.startswith("END ") for card in cards) == 1
    assert not any(card.startswith(("CONTINUE", "SIMPLE  =    ")) for card in cards[1:])
    header = verify_raw_frame(hostile)
    assert header["SIMPLE"] is True
    assert header["INTLKOK"] is False
    assert header["INTLKWHY"].startswith("CLOSED'\\nEND")
    assert header["INTLKWHY"].endswith("...")
    assert hostile.stat().st_size == benign.stat().st_size
