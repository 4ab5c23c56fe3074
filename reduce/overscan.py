"""Per-amplifier overscan model, as MEGARA's pipeline computes it.

``megaradrp.processing.trimover.OverscanCorrector`` (megaradrp 0.22) does, for
each amplifier, on the frame promoted to float32:

1. ``v = data[overscan].mean(axis=1)``: the float32 mean of the 50 overscan
   columns of every row of the amplifier (rows 0:2056, columns 4146:4196 for
   amplifier 1; rows 2156:4212, columns 0:50 for amplifier 2);
2. ``LSQUnivariateSpline(u, v, [knot], k=3)`` with ``u`` the raw row numbers,
   no weights and the default bounding box (first and last row): a cubic
   least-squares spline with one interior knot (row 1200, resp. 3100), fitted
   in float64;
3. ``data[trim] -= spl(u)[:, None]``: the float64 model of each row is
   subtracted from the float32 data, the result rounded back to float32.

By default we fit the same spline space with our own B-spline least squares
(numpy, QR): the model agrees with FITPACK's to ~3e-11 ADU, so the float32
result matches the pipeline's to within one float32 rounding step on some
pixels (measured: at most 1e-6 ADU on master darks and biases).
``backend="fitpack"`` calls scipy's FITPACK wrapper instead (scipy imported
lazily, only then), which reproduces the pipeline bit for bit when both use
the same scipy.
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from reduce.errors import SettingsError
from reduce.geometry import OVERSCAN_WIDTH, Amplifier

log = logging.getLogger(__name__)

SPLINE_DEGREE = 3

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

SplineBackend = Literal["numpy", "fitpack"]
"""``numpy``: our own least squares; ``fitpack``: scipy's LSQUnivariateSpline."""


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class Spline:
    """A fitted B-spline: full knot vector, coefficients and degree.

    Attributes
    ----------
    knots
        Full knot vector (boundary knots repeated ``degree + 1`` times).
    coeffs
        B-spline coefficients, ADU.
    degree
        Polynomial degree (3 for the overscan model).
    backend
        Which code fitted it, and so evaluates it.
    """

    knots: Float64Array
    coeffs: Float64Array
    degree: int
    backend: SplineBackend = "numpy"

    def __call__(self, x: npt.ArrayLike) -> Float64Array:
        """Evaluate the spline at ``x`` (inside the knot span), float64."""
        xa = np.asarray(x, dtype=np.float64)
        if self.backend == "fitpack":
            interpolate = _scipy_interpolate()
            values = interpolate.splev(xa, (self.knots, self.coeffs, self.degree))
            return np.asarray(values, dtype=np.float64)
        return bspline_basis(xa, self.knots, self.degree) @ self.coeffs


def bspline_basis(x: Float64Array, knots: Float64Array, degree: int) -> Float64Array:
    """Matrix of the B-spline basis functions evaluated at ``x``.

    Cox-de Boor recursion. The last interval is closed on the right, so the
    right boundary knot itself is inside the span (as FITPACK treats it).

    Parameters
    ----------
    x
        Abscissae, 1-D, within ``[knots[0], knots[-1]]``.
    knots
        Full, non-decreasing knot vector.
    degree
        Spline degree.

    Returns
    -------
    numpy.ndarray
        ``(len(x), len(knots) - degree - 1)`` float64 matrix.
    """
    t = knots
    n_intervals = len(t) - 1
    basis = np.zeros((x.size, n_intervals), dtype=np.float64)
    last = int(np.flatnonzero(t < t[-1])[-1])  # last non-empty interval
    for i in range(n_intervals):
        if t[i] < t[i + 1]:
            upper = (x <= t[i + 1]) if i == last else (x < t[i + 1])
            basis[:, i] = (x >= t[i]) & upper
    for k in range(1, degree + 1):
        new = np.zeros((x.size, n_intervals - k), dtype=np.float64)
        for i in range(n_intervals - k):
            left_den = t[i + k] - t[i]
            right_den = t[i + k + 1] - t[i + 1]
            if left_den > 0:
                new[:, i] += (x - t[i]) / left_den * basis[:, i]
            if right_den > 0:
                new[:, i] += (t[i + k + 1] - x) / right_den * basis[:, i + 1]
        basis = new
    return basis


def fit_lsq_spline(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    interior_knots: tuple[float, ...],
    backend: SplineBackend = "numpy",
) -> Spline:
    """Unweighted least-squares cubic spline with given interior knots.

    The equivalent of ``scipy.interpolate.LSQUnivariateSpline(x, y, t, k=3)``
    with the default bounding box ``[x[0], x[-1]]``.

    Parameters
    ----------
    x
        Increasing abscissae (row numbers).
    y
        Ordinates (ADU); promoted to float64 as FITPACK does.
    interior_knots
        Interior knots, strictly inside ``(x[0], x[-1])``.
    backend
        ``"numpy"`` (default) or ``"fitpack"`` (needs scipy).

    Returns
    -------
    Spline
        The fitted spline.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    k = SPLINE_DEGREE
    if backend == "fitpack":
        return _fit_fitpack(xa, ya, interior_knots)
    knots = np.concatenate(
        [
            np.full(k + 1, xa[0]),
            np.asarray(interior_knots, float),
            np.full(k + 1, xa[-1]),
        ]
    )
    design = bspline_basis(xa, knots, k)
    q, r = np.linalg.qr(design)
    coeffs = np.linalg.solve(r, q.T @ ya)
    return Spline(knots=knots, coeffs=coeffs, degree=k)


def _scipy_interpolate() -> Any:
    try:
        return importlib.import_module("scipy.interpolate")
    except ImportError as err:
        raise SettingsError(
            "overscan spline backend 'fitpack' needs scipy, which is not "
            "installed; install scipy or use backend='numpy'"
        ) from err


def _fit_fitpack(x: Float64Array, y: Float64Array, knots: tuple[float, ...]) -> Spline:
    interpolate = _scipy_interpolate()
    spl = interpolate.LSQUnivariateSpline(x, y, list(knots), k=SPLINE_DEGREE)
    t, c, degree = spl._eval_args
    return Spline(
        knots=np.asarray(t, dtype=np.float64),
        coeffs=np.asarray(c, dtype=np.float64),
        degree=int(degree),
        backend="fitpack",
    )


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields explicitly
class OverscanModel:
    """The overscan model of one amplifier of one frame.

    Two models: ``model`` is megaradrp's (the spline through the plain row
    means), which the combination subtracts so that the master agrees with
    megaradrp's bit for bit; ``level_model`` is the same spline through
    row means clipped of outliers, which the checks and the QC use, so that
    a cosmic ray in the overscan columns (thousands of ADU in a row mean of
    50 pixels) does not pass for a change of level, a light leak or noise.

    Attributes
    ----------
    amplifier
        Amplifier number, 1 or 2.
    profile
        float32 mean of the overscan columns, per row, ADU.
    model
        megaradrp's spline model evaluated on every row, float64, ADU.
    spline
        The fitted spline (of ``model``).
    level_model
        The outlier-free spline model evaluated on every row, float64, ADU.
    residual_rms
        Standard deviation of the overscan pixels of every
        :data:`ROBUST_ROW_STEP`-th row about their row's clipped mean
        (outliers beyond 5 robust sigmas dropped), ADU: an estimate of the
        read noise.
    """

    amplifier: int
    profile: Float32Array
    model: Float64Array
    spline: Spline
    level_model: Float64Array
    residual_rms: float

    @property
    def level(self) -> float:
        """Mean overscan level of the frame (outliers clipped), ADU."""
        return float(np.mean(self.level_model))

    @property
    def drift(self) -> float:
        """Level at the last row minus level at the first row, ADU."""
        return float(self.level_model[-1] - self.level_model[0])


def robust_std(values: npt.ArrayLike) -> float:
    """Standard deviation from the median absolute deviation (x 1.4826)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    return float(1.482602218505602 * np.median(np.abs(arr - np.median(arr))))


SCALE_SAMPLE = 16384
"""Values enough to place a clipping window: its median and MAD come from
every k-th value of a larger array (their statistical error, ~1% of sigma,
moves a 5-sigma cut by a negligible amount; the clipped statistic itself
uses every value)."""


def clip_window(arr: npt.NDArray[np.floating]) -> tuple[float, float]:
    """Centre (median) and robust sigma (MAD x 1.4826, > 0) of a clipping window.

    For arrays of more than 2 x :data:`SCALE_SAMPLE` values both come from an
    evenly spaced sample of about that many values.
    """
    flat = arr.ravel()
    step = max(1, flat.size // SCALE_SAMPLE // 2)
    sample = flat[::step]
    centre = float(np.median(sample))
    scale = 1.482602218505602 * float(np.median(np.abs(sample - centre)))
    return centre, max(scale, 1e-12)


def clipped_std(values: npt.ArrayLike, nsigma: float = 5.0) -> float:
    """Standard deviation of the values within ``nsigma`` of the median.

    The scale for the cut comes from the MAD; the result is a plain standard
    deviation of what is kept, so it stays unbiased on quantised (integer)
    data, where the MAD alone is not.
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    centre, scale = clip_window(arr)
    kept = arr[np.abs(arr - centre) <= nsigma * scale]
    return float(np.std(kept, ddof=1)) if kept.size > 1 else 0.0


ROBUST_ROW_STEP = 4
"""Every this-many-th overscan row (and the last) feeds ``level_model``."""


def _clipped_row_means(
    rows: Float32Array, nsigma: float = 5.0
) -> tuple[Float64Array, float]:
    """Per-row means of ``rows`` without outliers; the pixels' clipped scatter.

    An outlier is further than ``nsigma`` robust sigmas (the MAD of all
    pixels about their row's median) from its row's median. The scatter is
    the plain standard deviation of the kept deviations from their row's
    clipped mean, corrected for the mean's own degree of freedom.
    """
    median = np.median(rows, axis=1, keepdims=True)
    deviation = rows - median
    _, scale = clip_window(deviation)
    keep = np.abs(deviation) <= nsigma * scale
    count = np.maximum(keep.sum(axis=1), 1)
    means = np.where(keep, rows, 0.0).sum(axis=1, dtype=np.float64) / count
    residual = (rows - means[:, np.newaxis])[keep]
    width = rows.shape[1]
    spread = float(np.std(residual, ddof=1)) if residual.size > 1 else 0.0
    return means, spread * math.sqrt(width / max(width - 1, 1))


LEVEL_DOF = 5
"""Coefficients of the level model: a cubic spline with one interior knot."""


def level_error(model: OverscanModel) -> float:
    """Standard error of a frame's level model, ADU: its few coefficients are
    fitted to the sampled overscan pixels (every :data:`ROBUST_ROW_STEP`-th
    row, all columns), whose scatter is ``residual_rms``. It is common to
    every data pixel of the amplifier: a frame's offset that no average over
    its data pixels removes."""
    rows = len(range(0, model.level_model.size, ROBUST_ROW_STEP)) + 1
    width = OVERSCAN_WIDTH
    return model.residual_rms * math.sqrt(LEVEL_DOF / (rows * width))


def fit_overscan(
    overscan: npt.NDArray[np.generic], amp: Amplifier, backend: SplineBackend = "numpy"
) -> OverscanModel:
    """Fit one amplifier's overscan models (see :class:`OverscanModel`).

    Parameters
    ----------
    overscan
        The amplifier's overscan pixels, ``(2056, 50)``, ADU (any real dtype;
        raw unsigned 16-bit counts are exact in float32).
    amp
        The amplifier (gives the row numbers and the knot).
    backend
        Spline fitter of megaradrp's model, see :func:`fit_lsq_spline`
        (the outlier-free model always uses numpy's).

    Returns
    -------
    OverscanModel
        Profile, splines, per-row models and the read-noise estimate.
    """
    ov32 = np.asarray(overscan).astype(np.float32, copy=False)
    profile = ov32.mean(axis=1)  # float32 accumulation, as the pipeline
    rows = np.arange(amp.data_rows.start, amp.data_rows.stop)
    knot = (float(amp.knot_row),)
    spline = fit_lsq_spline(rows, profile, knot, backend)
    picked = np.arange(0, rows.size, ROBUST_ROW_STEP)
    if picked[-1] != rows.size - 1:  # and the last row (np.unique costs an
        picked = np.append(picked, rows.size - 1)  # import of numpy.ma)
    means, rms = _clipped_row_means(ov32[picked])
    level_spline = fit_lsq_spline(rows[picked], means, knot, "numpy")
    return OverscanModel(
        amplifier=amp.number,
        profile=profile,
        model=spline(rows),
        spline=spline,
        level_model=level_spline(rows),
        residual_rms=rms,
    )
