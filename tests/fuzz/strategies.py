"""Shared hypothesis settings and byte-stream strategies for the fuzz tests.

Every property here runs derandomized (the examples follow from the test's
name, not from the clock) and without the example database, so that CI runs
the same examples every time and leaves no ``.hypothesis`` folder behind.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from drivers.errors import ProtocolError
from drivers.protocol.archon import Verb, split_command


def fuzz(max_examples: int) -> settings:
    """Deterministic hypothesis settings with ``max_examples`` examples."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: Bytes a line-oriented protocol finds interesting: terminators, its own
#: punctuation, NUL, DEL, bytes with the high bit set.
SPICY = b"\r\n\n\r>*<?- =0123456789ABCDEFOSP\x00\x7f\x80\xff"


def stream_bytes(max_size: int = 400) -> st.SearchStrategy[bytes]:
    """Random bytes, biased towards the bytes a line protocol reacts to."""
    spicy = st.lists(st.sampled_from(list(SPICY)), max_size=max_size).map(bytes)
    return st.one_of(st.binary(max_size=max_size), spicy)


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, repeats allowed)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


cuts = st.lists(st.integers(0, 10_000), max_size=12)


# -- the Archon's command lines ----------------------------------------------------

#: Verbs the Archon knows, old ones it does not (our invented protocol's), and
#: lower case, which it does not read either.
ARCHON_VERBS = [verb.value for verb in Verb] + ["PING", "EXPOSE", "READ", "status"]
#: Configuration keys that shape the frame or the timing parameters.
ARCHON_KEYS = ["LINECOUNT", "PIXELCOUNT", "SAMPLEMODE", "FRAMEMODE", "BIGBUF"]
ARCHON_KEYS += ["TAPLINES", "TAPLINE0", "PARAMETERS", "PARAMETER0", "CONFIG/1"]
#: Parameters of simulators/megara.acf, in the cases hosts send them, and one
#: it does not declare.
ARCHON_PARAMS = ["INTCS", "IntMS", "EXPOSURES", "ReadOut", "OPENSHUTTER", "Nope"]
#: Frame buffer bases (three buffers, and the second of two) and elsewhere.
ARCHON_BASES = [0xA0000000, 0xC0000000, 0xD0000000, 0xE0000000, 0, 0xFFFFFFFF]
#: Block counts: none, MEGARA's frame (34519) and about it, past a buffer.
ARCHON_COUNTS = [0, 1, 34518, 34519, 34520, 0x80001, 0xFFFFFFFF]


def _hex(digits: int) -> st.SearchStrategy[bytes]:
    return st.integers(0, 16**digits - 1).map(lambda n: b"%0*X" % (digits, n))


def _number(max_digits: int) -> st.SearchStrategy[bytes]:
    """Decimal digits: small values, limits, or a long run of them."""
    return st.one_of(
        st.integers(0, 2**21).map(lambda n: b"%d" % n),
        st.integers(1, max_digits).map(lambda n: b"9" * n),
        st.integers(1, max_digits).map(lambda n: b"0" * n + b"1"),
    )


def _fetch() -> st.SearchStrategy[bytes]:
    base = st.sampled_from(ARCHON_BASES) | st.integers(0, 2**32 - 1)
    offset = st.sampled_from([0, 1, 1024, 7 * 1024, 35_347_104])
    address = st.tuples(base, offset).map(lambda a: min(sum(a), 2**32 - 1))
    count = st.sampled_from(ARCHON_COUNTS) | st.integers(0, 64)
    return st.tuples(address, count).map(lambda f: b"FETCH%08X%08X" % f)


def _alone(verb: Verb) -> bool:
    """Whether ``verb`` takes no argument."""
    try:
        split_command(verb.value)
    except ProtocolError:
        return False
    return True


def _command(max_digits: int) -> st.SearchStrategy[bytes]:
    """A verb and an argument of its shape (the values may still be refused)."""
    name = st.sampled_from(ARCHON_PARAMS).map(str.encode)
    key = st.sampled_from(ARCHON_KEYS).map(str.encode)
    value = st.one_of(_number(max_digits), st.binary(max_size=8), st.just(b"X=1"))
    setters = [b"FASTLOADPARAM", b"FASTPREPPARAM", b"LOADPARAM", b"PREPPARAM"]
    return st.one_of(
        st.sampled_from([verb.value.encode() for verb in Verb if _alone(verb)]),
        st.integers(0, 9).map(lambda n: b"LOCK%d" % n),
        _fetch(),
        st.integers(1, 64).map(lambda n: b"FETCHA0000000%08X" % n),  # buffer 1
        _hex(4).map(lambda a: b"RCONFIG" + a),
        st.tuples(_hex(4), key, value).map(lambda w: b"WCONFIG%s%s=%s" % w),
        st.tuples(st.sampled_from([b"APPLYMOD", b"APPLYDIO"]), _hex(1) | _hex(2)).map(
            b"".join
        ),
        st.tuples(st.sampled_from(setters), name, _number(max_digits)).map(b" ".join),
        st.tuples(st.sampled_from(setters[2:]), name).map(b" ".join),
    )


def archon_lines(
    *, valid: bool = True, max_digits: int = 30
) -> st.SearchStrategy[bytes]:
    """One line for the Archon: ``>`` id verb argument terminator, or junk.

    Commands of the right shape (unless not ``valid``), commands and verbs,
    known or not, followed by junk, malformed ids; the terminator LF, CR LF,
    CR (not one: the line goes on) or missing. Decimal values have at most
    ``max_digits`` digits.
    """
    ident = st.one_of(_hex(2), _hex(2), _hex(2), st.binary(max_size=3))
    verb = st.sampled_from(ARCHON_VERBS).map(str.encode)
    junk = st.binary(max_size=24) | st.lists(st.sampled_from(list(SPICY)), max_size=24)
    texts = [
        st.tuples(verb, junk.map(bytes)).map(b"".join),
        st.tuples(_command(max_digits), junk.map(bytes)).map(b"".join),
    ]
    if valid:
        texts += [_command(max_digits)] * 2
    end = st.sampled_from([b"\n"] * 6 + [b"\r\n", b"\r", b""])
    command = st.tuples(ident, st.one_of(texts), end).map(
        lambda parts: b">" + b"".join(parts)
    )
    return st.one_of(command, command, command, stream_bytes(60))
