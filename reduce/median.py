"""Selection networks for the exact median of N planes, run with numpy.

The median of a stack of N frames is taken by a comparator network: each
comparator is one ``np.minimum`` and/or one ``np.maximum`` over a whole
plane of the band, so the cost is the number of passes over a plane
(:func:`median_passes`), about 0.2 ns per pixel each, bound by memory.

The network (:func:`median_network`) is built, for each N, from Parberry's
pairwise sorting network on the next power of two, W lines
(:func:`pairwise_network`). The W - N absent inputs
are constants: ``-inf`` on the lowest lines, ``+inf`` on the others. A
comparator with a constant input does nothing, or exchanges its two lines
(a relabelling, no pass), so only the comparators between two of the N
planes remain. They are then pruned backwards from the two middle outputs
(ranks ``(N-1)//2`` and ``N//2``): a comparator is kept only if one of its
outputs is read later, and an output nobody reads is not computed
(:func:`median_schedule`). The split of the constants between ``-inf`` and
``+inf`` changes what the pruning removes; the cheapest split is taken.
Against the pruned Batcher odd-even merge network used before, as many
passes for N <= 8 and fewer beyond: 126 instead of 150 for N = 20 (-16 %),
302 instead of 382 for N = 35, 530 instead of 612 for N = 50.

Labels are finally permuted so that the middle values end on planes
``(N-1)//2`` and ``N//2`` (the median does not depend on which frame enters
which line). Only comparisons are made, no arithmetic: the middle values are
the exact order statistics, and NaN, which ``minimum``/``maximum``
propagate to both outputs, reaches the median from any input (every input
is connected to it), as with ``np.median``.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import numpy.typing as npt

from reduce.errors import InputError

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

_LOW, _HIGH = -1, -2
"""Line contents of the absent inputs: the constants -inf and +inf."""


@functools.cache
def pairwise_network(width: int) -> tuple[tuple[int, int], ...]:
    """Parberry's pairwise sorting network on ``width`` lines (a power of two).

    ``(a, b)`` with ``a < b``: the minimum goes to line ``a``, the maximum to
    line ``b``; in order of application. (I. Parberry, "The pairwise sorting
    network", Parallel Processing Letters 2, 1992.)
    """
    pairs: list[tuple[int, int]] = []
    a = 1
    while a < width:  # sort pairs, then pairs of pairs, ...
        _strided(pairs, width, a, a, a)
        a *= 2
    a //= 4
    e = 1
    while a > 0:  # then merge: lines a*d apart, d = e, e/2, ..., 1
        d = e
        while d > 0:
            _strided(pairs, width, (d + 1) * a, d * a, a)
            d //= 2
        a //= 2
        e = 2 * e + 1
    return tuple(pairs)


def _strided(
    pairs: list[tuple[int, int]], width: int, start: int, gap: int, run: int
) -> None:
    """Comparators ``(b - gap, b)`` for b from ``start``, ``run`` on, ``run`` off."""
    b, count = start, 0
    while b < width:
        pairs.append((b - gap, b))
        b += 1
        count = (count + 1) % run
        if count == 0:
            b += run


def _padded(n: int, low_pads: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Comparators between planes, and the planes holding the two middle ranks.

    Planes 0..n-1 enter lines ``low_pads`` to ``low_pads + n - 1`` of the
    pairwise network; the lines below hold -inf, those above +inf.
    """
    width = 1
    while width < n:
        width *= 2
    line = [_LOW] * low_pads + list(range(n)) + [_HIGH] * (width - n - low_pads)
    comparators = []
    for a, b in pairwise_network(width):
        x, y = line[a], line[b]
        if x == _LOW or y == _HIGH:
            continue  # already in order, whatever the planes hold
        if x == _HIGH or y == _LOW:
            line[a], line[b] = y, x  # a constant: the lines just exchange
            continue
        comparators.append((x, y))
    middle = (line[low_pads + (n - 1) // 2], line[low_pads + n // 2])
    return comparators, middle


def _pruned(
    comparators: list[tuple[int, int]], middle: tuple[int, int]
) -> list[tuple[int, int, bool, bool]]:
    """Comparators that influence the middle planes, with their live outputs."""
    live = set(middle)
    kept: list[tuple[int, int, bool, bool]] = []
    for x, y in reversed(comparators):
        if x in live or y in live:
            kept.append((x, y, x in live, y in live))
            live |= {x, y}
    kept.reverse()
    return kept


def _relabelled(
    steps: list[tuple[int, int, bool, bool]], n: int, middle: tuple[int, int]
) -> tuple[tuple[int, int, bool, bool], ...]:
    """``steps`` with the planes renumbered so the middle ends on ``(n-1)//2, n//2``."""
    targets = ((n - 1) // 2, n // 2)
    mapping = dict(zip(middle, targets, strict=True))
    rest = iter(t for t in range(n) if t not in targets)
    for plane in range(n):
        if plane not in mapping:
            mapping[plane] = next(rest)
    return tuple((mapping[x], mapping[y], lo, hi) for x, y, lo, hi in steps)


def _passes(steps: tuple[tuple[int, int, bool, bool], ...]) -> int:
    return sum(lo + hi for _, _, lo, hi in steps)


@functools.cache
def median_schedule(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The median network of ``n`` planes, each comparator with its live outputs.

    ``(a, b, want_min, want_max)``: the minimum of planes ``a`` and ``b``
    goes to ``a`` and the maximum to ``b``, but only the outputs flagged are
    computed (the others are read by no later comparator and are not a
    middle plane). Afterwards planes ``(n-1)//2`` and ``n//2`` hold the two
    middle order statistics (the same plane for odd ``n``).
    """
    if n < 1:
        raise InputError(
            "stack", f"no frames to combine (n = {n}); expected one or more"
        )
    width = 1
    while width < n:
        width *= 2
    splits = (_split_schedule(n, low_pads) for low_pads in range(width - n + 1))
    return min(splits, key=_passes)  # the first of the cheapest


def _split_schedule(n: int, low_pads: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The schedule with ``low_pads`` constants -inf (the rest +inf)."""
    comparators, middle = _padded(n, low_pads)
    return _relabelled(_pruned(comparators, middle), n, middle)


@functools.cache
def schedule_array(n: int) -> npt.NDArray[np.int32]:
    """:func:`median_schedule` as an ``(steps, 4)`` int32 array, for the kernel.

    Rows ``(a, b, want_min, want_max)``, flags 0 or 1; read-only.
    """
    steps = np.array(median_schedule(n), dtype=np.int32).reshape(-1, 4)
    steps.flags.writeable = False
    return steps


def median_network(n: int) -> tuple[tuple[int, int], ...]:
    """The comparators of :func:`median_schedule`, ``(min plane, max plane)``."""
    return tuple((a, b) for a, b, _, _ in median_schedule(n))


def median_passes(n: int) -> int:
    """Passes over a plane (one ``minimum`` or ``maximum`` each) for ``n`` planes."""
    return _passes(median_schedule(n))


def run_median_schedule(planes: list[Float32Array], spare: Float32Array) -> None:
    """Run :func:`median_schedule` over ``planes`` in place.

    Afterwards ``planes[(n - 1) // 2]`` and ``planes[n // 2]`` hold the two
    middle order statistics; the other entries are scratch (dead outputs are
    not kept up to date). ``spare`` is one more plane of scratch. A comparator
    with both outputs live writes its minimum into the spare plane and its
    maximum over the first input, then the three planes swap roles: two
    passes over the plane instead of three; with one live output, one pass.
    """
    for a, b, want_min, want_max in median_schedule(len(planes)):
        low, high = planes[a], planes[b]
        if want_min and want_max:
            np.minimum(low, high, out=spare)
            np.maximum(low, high, out=low)
            planes[a], planes[b], spare = spare, low, high
        elif want_min:
            np.minimum(low, high, out=low)
        elif want_max:
            np.maximum(low, high, out=high)
