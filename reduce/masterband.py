"""What each band of a master goes through once the combination has made it
final, before it is written.

The combination (:mod:`reduce.engine`, or the streaming reduction's
:mod:`reduce.window`) hands every final band of rows to a
:data:`~reduce.combine.BandSink`. A master's sink is :class:`MasterBand`:

1. the master bias's rows are subtracted from the median, in float32 and in
   place (as numina's BiasCorrector), so that the combination's own arrays
   hold the master that the QC then measures;
2. the pixels hit by cosmic rays are counted (:func:`count_cosmic_rays`), on
   the frames' own scatter, before the bias's variance is added;
3. the bias's variance is added to the variance of the median;
4. the rows go to the product writer (:class:`reduce.productfile.MasterSink`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from reduce.combine import (
    BandSink,
    Combined,
    NoiseModel,
    median_variance_factor,
    scratch,
)
from reduce.geometry import AMPLIFIERS

log = logging.getLogger(__name__)

Float32Array = npt.NDArray[np.float32]

COSMIC_NSIGMA = 8.0
"""A pixel is counted as hit by a cosmic ray when its frames scatter as if
one of them were this many modelled sigmas off (see :func:`count_cosmic_rays`).
Of the 16.8 million pixels of 20 synthetic one-hour darks without any
cosmic ray, 290 per amplifier were counted at 6, 3 at 7, none at 8 (and
none of 3 darks at 8)."""

MIN_FRAMES = 3
"""Fewest frames whose scatter tells a cosmic ray from noise."""


@dataclass(frozen=True, kw_only=True)
class CosmicRayModel:
    """What the count of pixels hit by cosmic rays compares the scatter with.

    Attributes
    ----------
    noise
        Read noise (ADU) and gain (e-/ADU) of each amplifier.
    nframes
        Frames combined (at least :data:`MIN_FRAMES`).
    floor_adu
        Per amplifier, the typical signal of a pixel (ADU above the bias),
        the least signal the Poisson term assumes: a pixel's own median of
        a few frames can be far below its true signal, which would make its
        ordinary scatter look like a hit.
    """

    noise: NoiseModel
    nframes: int
    floor_adu: tuple[float, float] = (0.0, 0.0)


def count_cosmic_rays(
    r0: int,
    signal: Float32Array,
    variance: Float32Array,
    npix: npt.NDArray[np.int16],
    model: CosmicRayModel,
) -> tuple[int, ...]:
    """Pixels hit by cosmic rays in trimmed rows ``r0:r0 + len(signal)``.

    The median (or the noise clipping) kept the hits out of the master; this
    counts them. A pixel is hit when some of its values were rejected
    (MAP < N), or when the sample variance of its N values exceeds the noise
    model's, ``RN^2 + max(signal, floor) / gain``, by more than one outlier
    of :data:`COSMIC_NSIGMA` sigmas would add (``1 + 8^2 / N`` times): a hit
    of more than ~8 sigmas (~25 ADU at 10 e- of dark) is found, and no clean
    pixel was counted in synthetic sets of 3 and 20 darks.

    Parameters
    ----------
    r0
        Trimmed row of the band's first row (selects the amplifiers).
    signal
        The band's median, bias subtracted, ADU.
    variance
        The variance of that median from the frames' scatter alone, ADU^2
        (sample variance times the median's efficiency factor).
    npix
        Frames used per pixel.
    model
        Noise model, frame count and signal floors.

    Returns
    -------
    tuple of int
        Per amplifier, the pixels of the band hit (0 for an amplifier the
        band does not reach).
    """
    n = model.nframes
    # variance = s^2 x f(N): compare it with sigma^2 x f(N) x (1 + k^2 / N).
    factor = np.float32(median_variance_factor(n) * (1 + COSMIC_NSIGMA**2 / n))
    hits = []
    for index, amp in enumerate(AMPLIFIERS):
        lo = max(r0, amp.trimmed_rows.start) - r0
        hi = min(r0 + signal.shape[0], amp.trimmed_rows.stop) - r0
        if lo >= hi:
            hits.append(0)
            continue
        shape = (hi - lo, signal.shape[1])
        limit = scratch("cosmic_limit", shape, np.float32)
        floor = np.float32(max(model.floor_adu[index], 0.0))
        np.maximum(signal[lo:hi], floor, out=limit)
        limit *= np.float32(1.0 / model.noise.gain[index])
        limit += np.float32(model.noise.read_noise_adu[index] ** 2)
        limit *= factor
        hit = scratch("cosmic_hit", shape, np.bool_)
        np.greater(variance[lo:hi], limit, out=hit)
        hit |= npix[lo:hi] < n
        hits.append(int(np.count_nonzero(hit)))
    return tuple(hits)


class MasterBand:
    """A master's band sink: the steps of the module docstring, then ``write``.

    Called from the combination's worker threads, several at once, each with
    its own band.

    Parameters
    ----------
    write
        Takes each band once it is final (the product writer).
    bias, bias_variance
        Trimmed master bias and its variance, ADU and ADU^2 (None: none).
    cosmic_rays
        The count's model (None: no count, e.g. fewer than 3 frames).
    """

    def __init__(
        self,
        write: BandSink,
        bias: Float32Array | None,
        bias_variance: Float32Array | None,
        cosmic_rays: CosmicRayModel | None,
    ) -> None:
        self._write = write
        self._bias = bias
        self._bias_variance = bias_variance
        self._model = cosmic_rays
        self._hits = [0] * len(AMPLIFIERS)
        self._lock = threading.Lock()

    @property
    def cosmic_ray_pixels(self) -> tuple[int, ...] | None:
        """Pixels hit by cosmic rays per amplifier so far (None: not counted)."""
        return None if self._model is None else tuple(self._hits)

    def __call__(self, r0: int, r1: int, combined: Combined) -> None:
        data = combined.data[r0:r1]
        variance = combined.variance[r0:r1]
        if self._bias is not None:
            data -= self._bias[r0:r1]
        if self._model is not None:  # the frames' scatter, before the bias's
            found = count_cosmic_rays(
                r0, data, variance, combined.npix[r0:r1], self._model
            )
            with self._lock:
                self._hits = [a + b for a, b in zip(self._hits, found, strict=True)]
        if self._bias_variance is not None:
            variance += self._bias_variance[r0:r1]
        self._write(r0, r1, combined)
