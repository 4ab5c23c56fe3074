"""FITS headers read and written without astropy.

Importing ``astropy.io.fits`` costs about 0.2 s of CPU (it imports
``astropy.units``), a tenth of a 20-frame reduction. The reduction only
needs headers: it reads raw frames' primary headers and a master bias's
HDU headers, and writes its products' headers. This module does that with
the fixed formats of the FITS standard (4.0, sections 4.1 and 4.2):

* reading: every card, its value typed (logical, integer, real, complex,
  string, undefined), long strings (the ``CONTINUE`` convention), ``HIERARCH``
  keywords and commentary cards. Each card keeps its text, so that a card
  copied from a raw frame into a product is written as it was read.
  A value that does not parse is kept as its text (as astropy does until the
  card is used): the keyword that needs it reports it then.
* writing: new cards in fixed format (values right-justified to column 30,
  strings from column 11); a string longer than one card continues on
  ``CONTINUE`` cards; a comment that does not fit is cut at column 80.

astropy remains the reference and the writer of everything else: the tests
read what this writes with astropy, and what astropy writes with this.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

CARD = 80
"""Characters per card."""

BLOCK = 2880
"""Bytes per FITS block."""


def padded(nbytes: int) -> int:
    """Bytes of ``nbytes`` padded to whole FITS blocks."""
    return -(-nbytes // BLOCK) * BLOCK


COMMENTARY = frozenset({"COMMENT", "HISTORY", ""})
"""Keywords whose cards hold free text, not a value."""

_VALUE_WIDTH = 20
"""Fixed format: values end in column 30 (columns 11 to 30)."""

_STRING_ROOM = CARD - 10 - 2
"""Characters of a string value (quotes excluded) that fit in one card."""

_CONTINUED_ROOM = CARD - 10 - 3
"""Characters per card of a continued string (quotes and ``&`` excluded)."""

_INT = re.compile(r"[+-]?\d+\Z")
_REAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?\Z")
_KEYWORD = re.compile(r"[A-Z0-9_-]{0,8}\Z")


class FitsHeaderError(ValueError):
    """A header or card that cannot be read or written."""


@dataclass(frozen=True, slots=True)
class Card:
    """One keyword record: its value, comment and text.

    Attributes
    ----------
    keyword
        Upper-case keyword (for ``HIERARCH`` cards, the words after it).
    value
        ``bool``, ``int``, ``float``, ``complex``, ``str`` or ``None``
        (undefined); for commentary cards, the text.
    comment
        The comment, or ``""``.
    image
        The card's text: 80 characters, or a multiple of 80 for a long
        string continued on ``CONTINUE`` cards.
    """

    keyword: str
    value: Any
    comment: str
    image: str

    @property
    def commentary(self) -> bool:
        """Whether this is a COMMENT, HISTORY or blank-keyword card."""
        return self.keyword in COMMENTARY


# --- Reading -------------------------------------------------------------------


def _split_string(field: str, where: str) -> tuple[str, str]:
    """A quoted string at the start of ``field``: its value and the rest."""
    pos = 1
    while True:
        end = field.find("'", pos)
        if end < 0:
            raise FitsHeaderError(f"{where}: string value without its closing quote")
        if field[end + 1 : end + 2] == "'":
            pos = end + 2
            continue
        return field[1:end].replace("''", "'").rstrip(), field[end + 1 :]


def _comment(rest: str) -> str:
    rest = rest.strip()
    return rest[1:].strip() if rest.startswith("/") else rest


def _number(text: str) -> Any:
    if _INT.match(text):
        return int(text)
    if _REAL.match(text):
        return float(text.replace("D", "E").replace("d", "e"))
    return None


def _parse_value(field: str, where: str) -> tuple[Any, str]:
    """Value and comment of a value field (columns 11 to 80)."""
    text = field.lstrip()
    if text.startswith("'"):
        value, rest = _split_string(text, where)
        return value, _comment(rest)
    body, _, comment = text.partition("/")
    body = body.strip()
    comment = comment.strip()
    if body == "":
        return None, comment
    if body in ("T", "F"):
        return body == "T", comment
    number = _number(body)
    if number is not None:
        return number, comment
    if body.startswith("(") and body.endswith(")"):
        parts = [_number(p.strip()) for p in body[1:-1].split(",")]
        if len(parts) == 2 and None not in parts:
            return complex(parts[0], parts[1]), comment
    return body, comment  # not a FITS value: kept as its text


def _parse_card(image: str, index: int) -> Card:
    keyword = image[:8].rstrip().upper()
    where = f"card {index + 1} ({keyword or 'blank'})"
    if keyword == "HIERARCH" and "=" in image[8:]:
        name, _, field = image[8:].partition("=")
        value, comment = _parse_value(field, where)
        return Card(" ".join(name.split()).upper(), value, comment, image)
    if keyword in COMMENTARY or image[8:10] != "= ":
        return Card(keyword, image[8:].rstrip(), "", image)
    value, comment = _parse_value(image[10:], where)
    return Card(keyword, value, comment, image)


def parse_cards(text: str) -> list[Card]:
    """The cards of header ``text``, up to END (END excluded).

    Raises
    ------
    FitsHeaderError
        Text that is not printable ASCII, a string without its closing
        quote, or no END card.
    """
    if not text.isascii() or not text.isprintable():
        bad = next(
            i for i, c in enumerate(text) if not (c.isascii() and c.isprintable())
        )
        raise FitsHeaderError(
            f"card {bad // CARD + 1}: character {text[bad]!r} is not printable ASCII"
        )
    cards: list[Card] = []
    for index, start in enumerate(range(0, len(text) - CARD + 1, CARD)):
        image = text[start : start + CARD]
        if image[:8] == "END     ":
            return cards
        card = _parse_card(image, index)
        previous = cards[-1] if cards else None
        if (
            card.keyword == "CONTINUE"
            and previous is not None
            and isinstance(previous.value, str)
            and previous.value.endswith("&")
            and not previous.commentary
            and image[8:10] != "= "
        ):
            value, comment = _parse_value(image[8:], f"card {index + 1} (CONTINUE)")
            if isinstance(value, str):
                joined = " ".join(c for c in (previous.comment, comment) if c)
                cards[-1] = Card(
                    previous.keyword,
                    previous.value[:-1] + value,
                    joined,
                    previous.image + image,
                )
                continue
        cards.append(card)
    raise FitsHeaderError("no END card")


# --- Writing -------------------------------------------------------------------


def _check_text(text: str, what: str) -> None:
    if not text.isascii() or not text.isprintable():
        raise FitsHeaderError(f"{what} {text!r}: FITS allows printable ASCII only")


_QUOTE_SLASH = re.compile(r"' */")
"""A quote, any spaces, a slash: where astropy ends a string value."""


def fits_text(text: str, limit: int | None = None) -> str:
    """``text`` made writable in a card: the one policy for text from outside.

    Characters beyond printable ASCII are escaped as Python does (``\\xed``,
    ``\\n``): free text from outside (a file name in a QA reason, a
    read-back of the hardware) is recorded, never refused, and no line
    break, NUL or byte of another card gets in. With ``limit``, the result
    is cut so that, quotes doubled, it takes at most ``limit`` characters,
    ending in ``...``: a value that must stay on one card. A slash after a
    quote (spaces between or not) is written ``\\x2f``: astropy (and so numina
    and megaradrp) would end the string at that quote, even a doubled one.
    """
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    clean = "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)
    clean = _QUOTE_SLASH.sub(lambda found: found.group(0)[:-1] + "\\x2f", clean)
    if limit is not None and len(clean) + clean.count("'") > limit:
        while len(clean) + clean.count("'") > limit - 3:
            clean = clean[:-1]
        clean += "..."
    return clean


def format_real(value: float) -> str:
    """A real value as FITS writes it: shortest round-trip digits, upper-case E."""
    if not math.isfinite(value):
        raise FitsHeaderError(f"real value {value!r}: FITS has no NaN or infinity")
    text = repr(float(value)).upper()
    mantissa, e, exponent = text.partition("E")
    if "." not in mantissa:
        mantissa += ".0"
    if e:
        sign = "-" if exponent.startswith("-") else "+"
        text = f"{mantissa}E{sign}{exponent.lstrip('+-').zfill(2)}"
    else:
        text = mantissa
    digits = 16
    while len(text) > _VALUE_WIDTH:  # only extreme exponents: fewer digits
        text = f"{value:.{digits}E}"
        digits -= 1
    return text


def _format_value(value: Any, keyword: str) -> str:
    if isinstance(value, bool):
        return ("T" if value else "F").rjust(_VALUE_WIDTH)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = format_real(value)
    elif isinstance(value, complex):
        text = f"({format_real(value.real)}, {format_real(value.imag)})"
    elif value is None:
        return " " * _VALUE_WIDTH
    else:
        raise FitsHeaderError(f"{keyword}: cannot write a {type(value).__name__}")
    if len(text) > _VALUE_WIDTH and not isinstance(value, complex):
        raise FitsHeaderError(f"{keyword}: value {text} longer than 20 characters")
    return text.rjust(_VALUE_WIDTH)


def _with_comment(head: str, comment: str) -> str:
    if comment and len(head) + 3 < CARD:
        head = f"{head} / {comment}"
    return head[:CARD].ljust(CARD)


def _string_pieces(escaped: str, room: int) -> Iterator[str]:
    """``escaped`` cut into pieces of at most ``room``, never inside a ``''``."""
    while escaped:
        cut = min(room, len(escaped))
        piece = escaped[:cut]
        # An odd run of quotes at the end would split a doubled quote.
        run = len(piece) - len(piece.rstrip("'"))
        if run % 2 and cut < len(escaped):
            cut -= 1
            piece = escaped[:cut]
        yield piece
        escaped = escaped[cut:]


def format_card(keyword: str, value: Any, comment: str = "") -> str:
    """The text of a new card (80 characters, more for a long string).

    Parameters
    ----------
    keyword
        At most 8 characters of ``A-Z 0-9 _ -``; COMMENT, HISTORY or ``""``
        for commentary (``value`` is then the text, wrapped onto more cards
        when longer than 72 characters).
    value
        ``bool``, ``int``, ``float``, ``complex``, ``str`` or ``None``.
    comment
        Cut at column 80 when it does not fit.
    """
    keyword = keyword.upper()
    if not _KEYWORD.match(keyword):
        raise FitsHeaderError(f"keyword {keyword!r}: expected up to 8 of A-Z 0-9 _ -")
    _check_text(comment, f"{keyword} comment")
    if keyword in COMMENTARY:
        text = str(value)
        _check_text(text, keyword or "blank card")
        lines = [text[i : i + CARD - 8] for i in range(0, len(text), CARD - 8)]
        return "".join(f"{keyword:8}{line}".ljust(CARD) for line in lines or [""])
    if not isinstance(value, str):
        return _with_comment(f"{keyword:8}= {_format_value(value, keyword)}", comment)
    _check_text(value, keyword)
    escaped = value.replace("'", "''")
    if len(escaped) <= _STRING_ROOM:
        quoted = f"'{escaped.ljust(8)}'".ljust(_VALUE_WIDTH)
        return _with_comment(f"{keyword:8}= {quoted}", comment)
    pieces = list(_string_pieces(escaped, _CONTINUED_ROOM))
    lines = [f"{keyword:8}= '{pieces[0]}&'".ljust(CARD)]
    lines += [f"CONTINUE  '{p}&'".ljust(CARD) for p in pieces[1:-1]]
    lines.append(_with_comment(f"CONTINUE  '{pieces[-1]}'", comment))
    return "".join(lines)


def make_card(keyword: str, value: Any, comment: str = "") -> Card:
    """A new card, formatted (see :func:`format_card`)."""
    return Card(keyword.upper(), value, comment, format_card(keyword, value, comment))


# --- Headers -------------------------------------------------------------------


class Header:
    """An ordered list of cards with keyword access (first card of a keyword).

    Reads like a mapping (``in``, ``[]``, ``get``); ``header[key] = value``
    or ``= (value, comment)`` replaces the first card of that keyword in
    place, or appends one.
    """

    def __init__(self, cards: Iterable[Card] = ()) -> None:
        self._cards = list(cards)

    @classmethod
    def fromstring(cls, text: str) -> Header:
        """Parse header text (80-character cards up to END)."""
        return cls(parse_cards(text))

    @property
    def cards(self) -> tuple[Card, ...]:
        """The cards, in order."""
        return tuple(self._cards)

    def _index(self, key: str) -> int | None:
        key = key.upper()
        if key.startswith("HIERARCH "):
            key = " ".join(key.split()[1:])
        for index, card in enumerate(self._cards):
            if card.keyword == key and not card.commentary:
                return index
        return None

    def __iter__(self) -> Iterator[str]:
        """Keywords of the value cards, in order (commentary cards skipped)."""
        return (card.keyword for card in self._cards if not card.commentary)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._index(key) is not None

    def __getitem__(self, key: str) -> Any:
        index = self._index(key)
        if index is None:
            raise KeyError(key)
        return self._cards[index].value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        index = self._index(key)
        return default if index is None else self._cards[index].value

    def comment(self, key: str) -> str:
        """The comment of ``key``'s card."""
        index = self._index(key)
        if index is None:
            raise KeyError(key)
        return self._cards[index].comment

    def __setitem__(self, key: str, value: Any) -> None:
        value, comment = value if isinstance(value, tuple) else (value, "")
        card = make_card(key, value, comment)
        index = self._index(key)
        if index is None:
            self._cards.append(card)
        else:
            self._cards[index] = card

    def append(self, card: Card) -> None:
        """Add ``card`` at the end."""
        self._cards.append(card)

    def add_history(self, text: str) -> None:
        """Add HISTORY card(s) with ``text``."""
        self._cards.append(make_card("HISTORY", text))

    def add_blank(self) -> None:
        """Add a blank card (room that a later update can use)."""
        self._cards.append(Card("", "", "", " " * CARD))

    def keys(self) -> list[str]:
        """Keywords in order (commentary keywords included)."""
        return [card.keyword for card in self._cards]

    def copy(self) -> Header:
        """A copy (cards are immutable; the list is not shared)."""
        return Header(self._cards)

    def __len__(self) -> int:
        """Lines of 80 characters the cards take (END excluded)."""
        return sum(len(card.image) // CARD for card in self._cards)

    def tostring(self) -> str:
        """The header as written: its cards, END, blanks to a whole block."""
        text = "".join(card.image for card in self._cards) + "END".ljust(CARD)
        return text + " " * (-len(text) % BLOCK)

    def __repr__(self) -> str:
        return "".join(card.image for card in self._cards)
