"""The DQBITS table of a master dark."""

from __future__ import annotations

import io

from astropy.io import fits

from reduce.hotpixels import DQ, DQ_DESCRIPTIONS
from reduce.products import dq_table


def test_dqbits_defines_every_bit_in_full() -> None:
    buffer = io.BytesIO()
    fits.PrimaryHDU().writeto(buffer)
    buffer.write(dq_table())  # a whole HDU, CHECKSUM/DATASUM set
    buffer.seek(0)
    with fits.open(buffer, checksum=True) as back:
        table = back["DQBITS"]
        assert table.verify_checksum() == 1
        assert table.verify_datasum() == 1
        rows = {int(r["BIT"]): (str(r["NAME"]), str(r["MEANING"])) for r in table.data}
        assert table.header["TFIELDS"] == 3
    assert rows == {
        int(bit): (str(bit.name), DQ_DESCRIPTIONS[bit]) for bit in DQ
    }  # no meaning cut at a fixed column width
