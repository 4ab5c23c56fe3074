"""The simulated Archon's configuration memory and what applying it means.

The controller holds :data:`~drivers.protocol.archon.MAX_CONFIG_LINES` lines of
``KEY=VALUE`` text (``RCONFIG``/``WCONFIG``, :mod:`drivers.protocol.archon_acf`).
Writing a line changes nothing until it is applied: ``APPLYCDS`` (or
``APPLYALL``) turns ``LINECOUNT``, ``PIXELCOUNT``, ``TAPLINES``/``TAPLINEn``,
``FRAMEMODE``, ``SAMPLEMODE`` and ``BIGBUF`` into a :class:`Geometry`;
``APPLYALL``, ``LOADTIMING`` and ``LOADPARAMS`` turn the ``PARAMETERn="Name=
value"`` lines into the timing core's parameters (:func:`declared_parameters`).

Frame layout, as the public clients describe it: each tap (one amplifier read
by one ADC channel, ``TAPLINEn="AD1L, 1, 0"``: channel, ``L``/``R`` for the
direction its pixels are placed in a line, gain, offset) gives ``LINECOUNT``
lines of ``PIXELCOUNT`` pixels. ``FRAMEMODE`` 0 ("top first") puts the taps
side by side (width ``PIXELCOUNT`` x taps, height ``LINECOUNT``), 1 ("bottom
first") the same with the lines upside down, 2 ("split") the first half of the
taps across the top of the frame and the second half, read from the far edge,
across the bottom (width ``PIXELCOUNT`` x taps / 2, height ``LINECOUNT`` x 2).
Sources: camerad ``archon_controller.h`` (``framemode``: 0 topfirst,
1 bottomfirst, 2 split) and ``archon_interface.cpp`` (detector width
``PIXELCOUNT`` x horizontal amplifiers, height ``LINECOUNT`` x vertical ones);
sdss-archon ``actor/delegate.py`` (``_get_ccd_data``: taps ``PIXELCOUNT`` wide
side by side in mode 0, a ready image in mode 2).

MEGARA's CCD231-84 has two amplifiers at opposite corners: amplifier 1 reads
rows 0..2105 from row 0 up, left to right; amplifier 2 reads rows 4211..2106
from the far edge, right to left (:mod:`simulators.synthesis`). With
``LINECOUNT=2106``, ``PIXELCOUNT=4196``, ``TAPLINE0`` an ``L`` tap,
``TAPLINE1`` an ``R`` tap and ``FRAMEMODE=2``, the frame buffer is MEGARA's
raw frame exactly: 4196 pixels x 4212 lines (``simulators/megara.acf``).

Known limitations (ours, not the controller's): one or two taps only (tap
``n`` reads amplifier ``n + 1`` whatever its channel name); the taps' gain and
offset, binning and the skip parameters do not change the pixels; a window
larger than the detector is padded with the tap's mean overscan level.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.errors import ConfigError
from drivers.protocol.archon import (
    BIGBUF_BASES,
    BUFFER_BASES,
    MAX_CONFIG_LINES,
    SampleMode,
)
from drivers.protocol.archon_acf import (
    ConfigLine,
    config_integer,
    frame_size,
    parse_acf,
)

log = logging.getLogger(__name__)

#: Lines and pixels each MEGARA amplifier reads (its half of the raw frame).
AMP_LINES = 2106
AMP_PIXELS = 4196
#: Overscan pixels at the end of each amplifier's lines (padding level).
OVERSCAN_PIXELS = 50
#: Largest frame the model keeps in memory, pixels (twice MEGARA's raw frame).
MAX_FRAME_PIXELS = 2 * 2 * AMP_LINES * AMP_PIXELS

_TAP_RE = re.compile(
    r"\s*([A-Z]+)([0-9]+)([LR])\s*,\s*(-?[0-9.]+)\s*,\s*(-?[0-9.]+)\s*", re.IGNORECASE
)


class ConfigMemory:
    """The 16384 configuration lines, each ``(key, value)`` or empty."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, str] | None] = [None] * MAX_CONFIG_LINES

    def read(self, index: int) -> tuple[str, str] | None:
        """Line ``index`` (0..16383), or None when it is empty."""
        return self._lines[index]

    def write(self, line: ConfigLine) -> None:
        """Store one ``WCONFIG`` line (the codec has checked its shape)."""
        self._lines[line.index] = (line.key, line.value)

    def clear(self) -> None:
        """``CLEARCONFIG``: every line empty."""
        self._lines = [None] * MAX_CONFIG_LINES

    def load(self, entries: Iterable[tuple[str, str]]) -> None:
        """Clear, then write ``entries`` to lines 0, 1, ... as clients do."""
        self.clear()
        for index, (key, value) in enumerate(entries):
            self.write(ConfigLine(index, key, value))

    def load_acf(self, text: str) -> None:
        """The ``[CONFIG]`` lines of an ACF file, in file order."""
        self.load(parse_acf(text))

    def values(self) -> dict[str, str]:
        """Every non-empty line by upper-cased key (a later line wins)."""
        return {key.upper(): value for key, value in filter(None, self._lines)}


@dataclass(frozen=True)
class Tap:
    """One ``TAPLINEn``: its ADC channel and the direction of its pixels."""

    channel: str
    reverse: bool  # ``R``: the pixels are placed right to left


@dataclass(frozen=True)
class Geometry:
    """The frame the controller writes, from an applied configuration."""

    linecount: int = AMP_LINES
    pixelcount: int = AMP_PIXELS
    taps: tuple[Tap, ...] = (Tap("AD1", False), Tap("AD2", True))
    framemode: int = 2
    sample: SampleMode = SampleMode.BITS16
    bigbuf: bool = False

    @property
    def split(self) -> bool:
        """Taps in two rows (``FRAMEMODE=2`` with more than one tap)."""
        return self.framemode == 2 and len(self.taps) > 1

    @property
    def width(self) -> int:
        """Pixels per line of the frame buffer."""
        return frame_size(
            self.linecount, self.pixelcount, len(self.taps), self.framemode
        )[0]

    @property
    def height(self) -> int:
        """Lines of the frame buffer."""
        return frame_size(
            self.linecount, self.pixelcount, len(self.taps), self.framemode
        )[1]

    @property
    def bytes_per_pixel(self) -> int:
        """2 for 16-bit samples, 4 for 32-bit ones."""
        return 2 if self.sample is SampleMode.BITS16 else 4

    @property
    def bases(self) -> tuple[int, ...]:
        """``BUFnBASE`` of each frame buffer."""
        return BIGBUF_BASES if self.bigbuf else BUFFER_BASES

    @property
    def buffer_span(self) -> int:
        """Bytes of address space between two buffers' bases."""
        return self.bases[1] - self.bases[0]

    @property
    def read_fraction(self) -> float:
        """Pixels read per tap, as a fraction of a whole MEGARA amplifier's."""
        return self.linecount * self.pixelcount / (AMP_LINES * AMP_PIXELS)


def _taps(values: dict[str, str]) -> tuple[Tap, ...]:
    count = config_integer(values, "TAPLINES", 0, 0, 16)
    taps = []
    for n in range(count):
        text = values.get(f"TAPLINE{n}", "")
        if not text.strip():
            continue  # a real ACF may keep an empty TAPLINEn (BOSS: TAPLINE8=)
        match = _TAP_RE.fullmatch(text)
        if match is None:
            raise ConfigError(
                f"archon: TAPLINE{n}={text!r}; expected 'AD<channel><L|R>, gain,"
                " offset' like 'AD1L, 1, 0'"
            )
        taps.append(Tap(f"{match[1].upper()}{match[2]}", match[3].upper() == "R"))
    if not 1 <= len(taps) <= 2:
        raise ConfigError(
            f"archon: {len(taps)} taps configured (TAPLINES={count}); this simulated"
            " CCD231-84 has two amplifiers: configure one or two taps"
        )
    return tuple(taps)


def geometry_from(values: dict[str, str]) -> Geometry:
    """The :class:`Geometry` an ``APPLYCDS`` makes of the configuration ``values``.

    Raises
    ------
    ConfigError
        A key missing or out of range, a malformed tap line, other than one or
        two taps, or a frame above :data:`MAX_FRAME_PIXELS`.
    """
    for key in ("LINECOUNT", "PIXELCOUNT", "TAPLINES"):
        if key not in values:
            raise ConfigError(f"archon: no {key} line in the configuration to apply")
    geometry = Geometry(
        linecount=config_integer(values, "LINECOUNT", 0, 1, 65535),
        pixelcount=config_integer(values, "PIXELCOUNT", 0, 1, 65535),
        taps=_taps(values),
        framemode=config_integer(values, "FRAMEMODE", 0, 0, 2),
        sample=SampleMode(config_integer(values, "SAMPLEMODE", 0, 0, 1)),
        bigbuf=config_integer(values, "BIGBUF", 0, 0, 1) == 1,
    )
    pixels = geometry.width * geometry.height
    if pixels > MAX_FRAME_PIXELS:
        raise ConfigError(
            f"archon: a frame of {geometry.width} x {geometry.height} pixels; this"
            f" simulator keeps frames up to {MAX_FRAME_PIXELS} pixels"
        )
    return geometry


# -- pixels ----------------------------------------------------------------------

U16 = npt.NDArray[np.uint16]


def _tap_stream(raw: U16, amplifier: int, lines: int, pixels: int) -> U16:
    """What amplifier ``amplifier`` (0, 1) reads, in readout order, cut or padded."""
    half = raw[:AMP_LINES] if amplifier == 0 else raw[: AMP_LINES - 1 : -1, ::-1]
    if lines <= AMP_LINES and pixels <= AMP_PIXELS:
        return half[:lines, :pixels]
    level = round(float(half[:, -OVERSCAN_PIXELS:].mean()))
    out = np.full((lines, pixels), level, dtype=np.uint16)
    keep = half[:lines, :pixels]
    out[: keep.shape[0], : keep.shape[1]] = keep
    return out


def assemble(raw: U16, geometry: Geometry) -> npt.NDArray[np.generic]:
    """The frame buffer's pixels, from MEGARA's raw frame (4212 x 4196 uint16).

    Returns a C-contiguous little-endian array of ``geometry.height`` x
    ``geometry.width`` pixels, 16-bit or 32-bit as ``geometry.sample`` says;
    for MEGARA's own configuration, the raw frame itself.
    """
    dtype = "<u2" if geometry.sample is SampleMode.BITS16 else "<u4"
    natural = Geometry()
    if (
        geometry.linecount == natural.linecount
        and geometry.pixelcount == natural.pixelcount
        and geometry.split
        and [tap.reverse for tap in geometry.taps] == [False, True]
    ):
        return np.ascontiguousarray(raw, dtype=dtype)
    placed = []
    for amplifier, tap in enumerate(geometry.taps):
        stream = _tap_stream(raw, amplifier, geometry.linecount, geometry.pixelcount)
        placed.append(stream[:, ::-1] if tap.reverse else stream)
    if geometry.split:
        half = -(-len(placed) // 2)
        top, bottom = np.hstack(placed[:half]), np.hstack(placed[half:])
        frame = np.vstack([top, bottom[::-1]])
    else:
        frame = np.hstack(placed)
        if geometry.framemode == 1:
            frame = frame[::-1]
    return np.ascontiguousarray(frame, dtype=dtype)
