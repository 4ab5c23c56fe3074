"""Exact median combination of frame stacks, in row bands.

What numina 0.40 does (``numina.array.combine.median``, C++ in
``numina/array/src/operations.h``, ``median_central_tendency``): for each
pixel, the N values are converted to double; the median is the middle value
(``std::nth_element``) for odd N and ``(upper + lower) / 2.0`` of the two
middle values for even N; the result is cast to the output dtype, float32.
Its "variance" is ``sum((x - mean)**2) / (N - 1) / 0.637`` (the scatter of
one frame inflated by 1/0.637, *not* divided by N), and the MAP is N.

We return the same median, bit for bit: the selection is exact, and the
mean of the two middle float32 values is computed in float32 in a way that
rounds exactly as numina's double mean cast to float32
(:func:`middle_mean_into`). It is faster and bounded in memory:
the stack is processed in bands of rows (:func:`combine_band_into`; the
bands come from :mod:`reduce.engine` or :mod:`reduce.window`), and for
N <= 64 the middle order statistics come from a selection network
(:mod:`reduce.median`: a pairwise sorting network pruned for the median)
run with vectorised ``minimum``/``maximum`` over a cache-sized band (no
per-pixel calls).

The variance we return is that of the combined pixel: the sample variance
of the N values (ddof=1) times the efficiency factor of the median,
``pi / (2 N)`` for N >= 3 (asymptotic, Gaussian), ``1 / 2`` for N = 2 (the
median of two values is their mean), and, for N = 1, the noise model's
variance when one is given (NaN otherwise).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from reduce.compiled import KERNELS
from reduce.errors import InputError, SettingsError
from reduce.geometry import AMP1, AMP2
from reduce.median import run_median_schedule

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

NETWORK_MAX_N = 64
"""Largest stack for which the median network is used (np.partition beyond)."""

DEFAULT_BAND_ROWS = 16
"""Rows per band of numpy's combination: a plane of 16 x 4096 float32
(256 KiB) fits a core's L2 cache and the band of N ~ 20 planes the L3; 8 to
32 rows measured alike (issue 15), and each row more costs
``threads x N x 16 KiB`` of memory."""

KERNEL_BAND_ROWS = 64
"""Rows per band of the compiled kernel, which holds a band as raw words
(``threads x N x 8 KiB`` per row) and works on 8 pixels at a time in
registers: fewer, larger bands spend less time in Python between kernel
calls. 20 frames on 2 threads: the combination took 0.52 s with 64 rows,
0.74 s with 16 (medians of 6 alternating runs, issue 15); 128 rows were no
faster."""


@dataclass(frozen=True, kw_only=True)
class NoiseModel:
    """CCD noise model, per amplifier (amplifier 1 = trimmed rows 0:2056).

    Attributes
    ----------
    read_noise_adu
        Read noise of amplifiers 1 and 2, ADU.
    gain
        Gains of amplifiers 1 and 2, electrons per ADU.
    nsigma
        Rejection threshold, in units of the modelled standard deviation.
    """

    read_noise_adu: tuple[float, float]
    gain: tuple[float, float] = (AMP1.gain, AMP2.gain)
    nsigma: float = 5.0

    def __post_init__(self) -> None:
        if min(self.read_noise_adu) < 0:
            raise SettingsError(
                f"noise.read_noise_adu must be >= 0, got {self.read_noise_adu}"
            )
        if min(self.gain) <= 0:
            raise SettingsError(f"noise.gain must be > 0 e-/ADU, got {self.gain}")
        if self.nsigma <= 0:
            raise SettingsError(f"noise.nsigma must be > 0, got {self.nsigma}")

    def variance(self, level: Float64Array, row0: int) -> Float64Array:
        """Variance of one frame's pixel, ADU^2, for a band starting at ``row0``.

        ``RN^2 + max(level, 0) / gain``: read noise plus Poisson noise of the
        signal ``level`` (ADU above the overscan).
        """
        rows = np.arange(row0, row0 + level.shape[0])
        amp1 = (rows < AMP1.trimmed_rows.stop)[:, np.newaxis]
        rn2 = np.where(amp1, self.read_noise_adu[0] ** 2, self.read_noise_adu[1] ** 2)
        gain = np.where(amp1, self.gain[0], self.gain[1])
        result: Float64Array = rn2 + np.maximum(level, 0.0) / gain
        return result


@dataclass(frozen=True, kw_only=True)
class CombineConfig:
    """How to combine a stack.

    Attributes
    ----------
    method
        ``"median"``: numina's median, all frames used (megaradrp default).
        ``"noise_clip"``: values further than ``noise.nsigma`` modelled sigmas
        from the median are rejected, and the median of the rest is taken.
    band_rows
        Rows processed at a time.
    noise
        Noise model; needed by ``noise_clip``, and for the variance of N = 1.
    """

    method: Literal["median", "noise_clip"] = "median"
    band_rows: int = DEFAULT_BAND_ROWS
    noise: NoiseModel | None = None

    def __post_init__(self) -> None:
        if self.method not in ("median", "noise_clip"):
            raise SettingsError(
                f"combine.method must be 'median' or 'noise_clip', got {self.method!r}"
            )
        if self.band_rows < 1:
            raise SettingsError(f"combine.band_rows must be >= 1, got {self.band_rows}")
        if self.method == "noise_clip" and self.noise is None:
            raise SettingsError(
                "combine.method 'noise_clip' needs a noise model "
                "(read noise and gain per amplifier)"
            )


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Combined:
    """The result of a combination.

    Attributes
    ----------
    data
        Combined frame, float32, ADU.
    variance
        Variance of each combined pixel, float32, ADU^2.
    npix
        Number of frames used for each pixel, int16 (the MAP extension).
    """

    data: Float32Array
    variance: Float32Array
    npix: npt.NDArray[np.int16]


BandSink = Callable[[int, int, Combined], None]
"""``sink(r0, r1, combined)``: rows ``r0:r1`` of ``combined`` are final.

Called from the worker thread that finished the band (any order, several
threads at once); the sink may modify those rows of ``combined`` in place
(the master bias is subtracted there) and write them out.
"""


_SCRATCH = threading.local()
"""Per-thread scratch arrays of the band combination, reused band after band.

Fresh temporaries of a few hundred KiB per band are returned to the kernel
and faulted in again at the next band (glibc's thread arenas shrink):
about 200 000 page faults in a 20-frame master dark before they were reused.
"""


def scratch(
    name: str, shape: tuple[int, ...], dtype: type[np.generic]
) -> npt.NDArray[Any]:
    """This thread's scratch array ``name`` (uninitialised, reused)."""
    key = (name, shape, np.dtype(dtype))
    cache: dict[tuple[str, tuple[int, ...], np.dtype[Any]], npt.NDArray[Any]] | None
    cache = getattr(_SCRATCH, "arrays", None)
    if cache is None:
        cache = _SCRATCH.arrays = {}
    found = cache.get(key)
    if found is None:
        found = cache[key] = np.empty(shape, dtype=dtype)
    return found


def _middle_values(band: Float32Array) -> tuple[Float32Array, Float32Array]:
    """The lower and upper middle order statistics along axis 0 (a copy)."""
    n = band.shape[0]
    lo_idx, hi_idx = (n - 1) // 2, n // 2
    if n > NETWORK_MAX_N:
        part = np.partition(band, (lo_idx, hi_idx), axis=0)
        return part[lo_idx], part[hi_idx]
    planes = [plane.copy() for plane in band]
    run_median_schedule(planes, np.empty(band.shape[1:], dtype=band.dtype))
    return planes[lo_idx], planes[hi_idx]


def median_planes(band: npt.NDArray[np.floating]) -> Float64Array:
    """Exact median along axis 0, float64, numina's convention for even N."""
    lo, hi = _middle_values(np.asarray(band))
    return (lo.astype(np.float64) + hi) / 2.0


def median_variance_factor(n: int) -> float:
    """Variance of the median of ``n`` Gaussian values over the population's."""
    if n <= 1:
        return 1.0
    if n == 2:
        return 0.5
    return math.pi / (2.0 * n)


def _sample_variance(
    band: npt.NDArray[np.floating], centre: Float64Array | None = None
) -> Float64Array:
    """Unbiased sample variance along axis 0, one plane at a time.

    With ``centre`` (e.g. the median), the sums are of ``x - centre`` in the
    band's dtype (float32: fast, and exact enough because the deviations are
    small); otherwise a two-pass float64 computation.
    """
    n = band.shape[0]
    if centre is not None:
        c = centre.astype(band.dtype)
        s1 = np.zeros(band.shape[1:], dtype=band.dtype)
        s2 = np.zeros_like(s1)
        dev = np.empty_like(s1)
        for plane in band:
            np.subtract(plane, c, out=dev)
            s1 += dev
            dev *= dev
            s2 += dev
        shifted: Float64Array = (
            s2.astype(np.float64) - s1.astype(np.float64) ** 2 / n
        ) / max(n - 1, 1)
        return np.maximum(shifted, 0.0)
    total = np.zeros(band.shape[1:], dtype=np.float64)
    for plane in band:
        total += plane
    mean = total / n
    ss = np.zeros_like(mean)
    for plane in band:
        diff = plane - mean
        ss += diff * diff
    result: Float64Array = ss / max(n - 1, 1)
    return result


class ShiftedSums:
    """:func:`shifted_sums` taken plane by plane, as the planes are filled.

    A plane just written is still in the core's cache: adding it to the
    sums there saves reading the whole band back from memory. Same float32
    operations in the same order as :func:`shifted_sums`, same result.
    The sums are this thread's :func:`scratch` arrays.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.s1 = scratch("s1", shape, np.float32)
        self.s2 = scratch("s2", shape, np.float32)
        self._dev = scratch("dev", shape, np.float32)
        self.s1.fill(0.0)
        self.s2.fill(0.0)
        self._first: Float32Array | None = None

    def add(self, plane: Float32Array) -> None:
        """Add the next plane (the first is the shift)."""
        if self._first is None:
            self._first = plane
            return
        np.subtract(plane, self._first, out=self._dev)
        self.s1 += self._dev
        self._dev *= self._dev
        self.s2 += self._dev


def shifted_sums(band: Float32Array) -> tuple[Float32Array, Float32Array]:
    """Sums of ``x_k - x_0`` and of its square over k = 1..N-1, float32.

    Frame order, one plane at a time: the streaming reduction
    (:mod:`reduce.window`) accumulates the same sums as the frames arrive,
    with the same float32 operations in the same order, so both paths give
    identical variances. Shifting by the first frame keeps the sums small
    (deviations of one pixel between frames), so float32 is accurate enough.
    The sums are this thread's :func:`scratch` arrays: valid until its next
    call.
    """
    sums = ShiftedSums(band.shape[1:])
    for plane in band:
        sums.add(plane)
    return sums.s1, sums.s2


def finish_variance(
    s1: Float32Array, s2: Float32Array, n: int, out: Float32Array
) -> None:
    """Variance of the median of ``n >= 2`` values from their shifted sums, ADU^2.

    ``(s2 - s1^2 / n) / (n - 1)`` (the unbiased sample variance) times
    :func:`median_variance_factor`, into ``out``, in float32 and in place:
    ``s1`` is overwritten. The sums are float32 already, so finishing in
    float64 would add no accuracy: the result is good to a few float32
    roundings of ``s2``, far below the estimate's own scatter.
    """
    np.multiply(s1, s1, out=s1)
    s1 *= np.float32(1.0 / n)
    np.subtract(s2, s1, out=out)
    np.maximum(out, np.float32(0.0), out=out)
    out *= np.float32(median_variance_factor(n) / (n - 1))


def middle_mean_into(
    lower: Float32Array, upper: Float32Array, out: Float32Array
) -> None:
    """numina's even-N median, ``float32((double(lower) + double(upper)) / 2.0)``.

    Computed in float32, bit for bit the same: the sum of two float32 values
    is exact in double (or, when their exponents are more than 29 apart, so
    close to the larger one that both roundings give it), so numina rounds
    the exact sum once, and so does the float32 addition; halving is exact
    and commutes with that rounding. (Not for sums beyond float32's range or
    halves below its normal range, ~1e38 and ~1e-38: never ADU.)
    """
    np.add(lower, upper, out=out)
    out *= np.float32(0.5)


def uses_network(config: CombineConfig, n: int) -> bool:
    """Whether a band of ``n`` frames is combined by the median network."""
    return _network_median(config.method, n)


def _network_median(method: Literal["median", "noise_clip"], n: int) -> bool:
    return method == "median" and 2 <= n <= NETWORK_MAX_N


def band_rows_for(method: Literal["median", "noise_clip"], n: int) -> int:
    """Rows per band when none were asked: the compiled kernel's where it
    combines ``n`` frames by ``method``, else numpy's."""
    kernel = KERNELS is not None and _network_median(method, n)
    return KERNEL_BAND_ROWS if kernel else DEFAULT_BAND_ROWS


def combine_band_into(
    band: Float32Array,
    config: CombineConfig,
    row0: int,
    data: Float32Array,
    variance: Float32Array,
    npix: npt.NDArray[np.int16],
    sums: ShiftedSums | None = None,
) -> None:
    """Combine a band in place (its planes are overwritten) into output rows.

    The variance's shifted sums are taken first; then the median comes from
    the pruned sorting network run over the band's own planes
    (:func:`run_median_schedule`: only the live outputs of each comparator),
    so nothing is copied.

    Parameters
    ----------
    band
        ``(N, rows, columns)`` float32 values, ADU; scratch: overwritten.
    config
        Method and noise model.
    row0
        Trimmed-frame row of the band's first row (selects the amplifier).
    data, variance, npix
        ``(rows, columns)`` destinations: median (ADU, float32), its variance
        (ADU^2, float32) and frames used (int16).
    sums
        The band's :class:`ShiftedSums`, when they were taken as it was
        filled (used by the median network path only).
    """
    n = band.shape[0]
    if n == 0:
        raise InputError("stack", "no frames to combine; expected at least one")
    if not uses_network(config, n):
        part = _combine_general(band, config, row0)
        data[...], variance[...], npix[...] = part.data, part.variance, part.npix
        return
    if sums is None:  # before the network overwrites the planes
        s1, s2 = shifted_sums(band)
    else:
        s1, s2 = sums.s1, sums.s2
    planes = list(band)
    run_median_schedule(planes, scratch("spare", band.shape[1:], np.float32))
    lower, upper = planes[(n - 1) // 2], planes[n // 2]
    if n % 2:
        data[...] = lower
    else:
        middle_mean_into(lower, upper, data)
    finish_variance(s1, s2, n, variance)
    npix[...] = n


def _combine_general(
    band: npt.NDArray[np.floating], config: CombineConfig, row0: int = 0
) -> Combined:
    """Noise clipping, single frames and large stacks (np.partition)."""
    n = band.shape[0]
    median = median_planes(band)
    npix = np.full(median.shape, n, dtype=np.int16)
    if config.method == "noise_clip":
        if config.noise is None:  # CombineConfig refuses it: a bug if seen
            raise SettingsError("combine.method 'noise_clip' needs a noise model")
        return _noise_clip(band, median, config.noise, row0)
    if n == 1:
        variance = _single_frame_variance(median, config.noise, row0)
    else:
        variance = _sample_variance(band, median) * median_variance_factor(n)
    return Combined(median.astype(np.float32), variance.astype(np.float32), npix)


def _single_frame_variance(
    level: Float64Array, noise: NoiseModel | None, row0: int
) -> Float64Array:
    if noise is None:
        return np.full(level.shape, np.nan)
    return noise.variance(level, row0)


def _noise_clip(
    band: npt.NDArray[np.floating], median: Float64Array, noise: NoiseModel, row0: int
) -> Combined:
    """Median after rejecting values inconsistent with the noise model."""
    n = band.shape[0]
    sigma = np.sqrt(noise.variance(median, row0))
    reject = np.abs(band - median) > noise.nsigma * sigma
    nkept = (n - reject.sum(axis=0)).astype(np.int16)
    # A pixel whose values were all rejected keeps all of them (no evidence).
    nkept[nkept == 0] = n
    reject[:, nkept == n] = False
    if n > 1:
        variance = _sample_variance(band) * median_variance_factor(n)
    else:
        variance = noise.variance(median, row0)
    result = median.copy()
    hit = nkept < n  # only these pixels need the masked median
    if hit.any():
        values, var = _masked_median(band[:, hit], reject[:, hit], noise, row0, hit)
        result[hit] = values
        variance[hit] = var
    return Combined(result.astype(np.float32), variance.astype(np.float32), nkept)


def _masked_median(
    values: npt.NDArray[np.floating],
    reject: npt.NDArray[np.bool_],
    noise: NoiseModel,
    row0: int,
    hit: npt.NDArray[np.bool_],
) -> tuple[Float64Array, Float64Array]:
    """Median and its variance of ``(N, k)`` values with rejections (NaN last)."""
    ordered = np.sort(np.where(reject, np.nan, values.astype(np.float64)), axis=0)
    count = (~reject).sum(axis=0)
    lo = np.take_along_axis(ordered, ((count - 1) // 2)[np.newaxis], axis=0)[0]
    hi = np.take_along_axis(ordered, (count // 2)[np.newaxis], axis=0)[0]
    median = (lo + hi) / 2.0
    mean = np.nansum(ordered, axis=0) / count
    sample_var = np.nansum((ordered - mean) ** 2, axis=0) / np.maximum(count - 1, 1)
    factor = np.where(count >= 3, math.pi / (2.0 * count), np.where(count == 2, 0.5, 1))
    level = np.zeros(hit.shape)
    level[hit] = median
    model_var = noise.variance(level, row0)[hit]
    variance = np.where(count >= 2, sample_var * factor, model_var)
    return median, variance
