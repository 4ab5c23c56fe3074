"""What the QA judges a master against: the detector's expected values, the
detection settings and the warn / bad limits (``[qc]`` of a QC file,
:func:`reduce.settings.load_qc_config`), and the verdict's values.

The figures and the verdict themselves are :mod:`reduce.qc`'s.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from reduce.errors import SettingsError

log = logging.getLogger(__name__)


class QAFlag(enum.Enum):
    """Overall verdict on a master, numina's QC values."""

    GOOD = "GOOD"
    PARTIAL = "PARTIAL"
    BAD = "BAD"


@dataclass(frozen=True)
class QALimit:
    """The QA's warn / bad pair of upper limits on one figure (None: not checked).

    Not :class:`sequencer.engineering.limits.Limit`, which bounds a figure of
    `megara-dark verify` from both sides.
    """

    warn: float | None
    bad: float | None

    def __post_init__(self) -> None:
        if self.warn is not None and self.bad is not None and self.warn > self.bad:
            raise SettingsError(f"qc limit warn={self.warn} exceeds bad={self.bad}")


@dataclass(frozen=True, kw_only=True)
class QCThresholds:
    """Detection settings, the detector's expected values, and the QA limits.

    The QA judges a master against what the detector is expected to do: the
    dark-current, read-noise and drift limits are multiples of
    ``expected_dark_current`` and ``expected_read_noise``, which a detector's
    QC file sets (``[qc]`` of ``--qc-config``). The defaults and where they
    come from (docs/products.md, "QA limits"):

    * ``expected_dark_current`` 5 e-/pix/h: the upper end of what MEGARA's
      e2v CCD231-84 shows at its operating temperature (the simulators'
      detector makes 2, the reduction's synthetic detector 10-12 with
      deliberately pessimistic defaults, the second test model 5); warn at
      3x (15), bad at 6x (30): a detector 10 K warmer than nominal doubles
      its dark current two to four times over and is BAD;
    * ``expected_read_noise`` 3.5 e-: MEGARA's slow-mode read noise (3.2-3.6
      e- in the three detector models of the tests); warn at 1.3x (4.55 e-,
      the earlier absolute 4.5), bad at 2x (7 e-);
    * overscan drift, in units of the expected read noise in ADU: drift the
      per-row overscan model follows does no harm (what it cannot follow
      shows as read noise); warn at 5x (~10 ADU), bad at 20x;
    * flagged fraction (hot pixels and columns): warn 0.1 %, bad 1 %, ten
      and a hundred times the hot-pixel density of the three models;
    * cosmic-ray residual fraction: warn 2e-4 (a master whose median was hit
      on that many pixels needs more frames); never BAD by itself;
    * the spread of the dark frames' CCD temperatures: warn above 2 K (the
      dark current changes by 25-70 % over 2 K; MEGARA's CCD is regulated
      far better), never BAD by itself.

    Attributes
    ----------
    hot_nsigma
        The hot cuts are at least this many sigmas of the master's noise.
    hot_rate_e_s
        Excess dark rate over the local background that makes a pixel hot,
        e-/s (0.02 e-/s = 72 e-/pix/h: 18 e- in a 900 s dark, about 8 sigma
        of a 5-frame master).
    hot_column_rate_e_s
        Mean excess rate over the background that makes a column hot, e-/s.
    expected_dark_current
        The detector's expected bulk dark current, e-/pix/h.
    expected_read_noise
        The detector's expected read noise, e-.
    dark_current, read_noise
        Limits, multiples of the expected values.
    overscan_drift
        Limits, multiples of the expected read noise in ADU.
    hot_fraction
        Limits on the fraction of pixels flagged hot (pixel or column).
    cosmic_residual_fraction
        Limits on the fraction of pixels whose median was hit.
    temperature_spread
        Limits on the spread of a dark block's CCD temperatures, K.

    The minimum frame count is not a QC limit: fewer usable frames than the
    reduction's ``min_frames`` (``--min-frames``, ``[reduce] min_frames`` of
    a run) is an error, and no master is made.
    """

    hot_nsigma: float = 5.0
    hot_rate_e_s: float = 0.02
    hot_column_rate_e_s: float = 0.002
    expected_dark_current: float = 5.0
    expected_read_noise: float = 3.5
    dark_current: QALimit = QALimit(warn=3.0, bad=6.0)
    read_noise: QALimit = QALimit(warn=1.3, bad=2.0)
    overscan_drift: QALimit = QALimit(warn=5.0, bad=20.0)
    hot_fraction: QALimit = QALimit(warn=0.001, bad=0.01)
    cosmic_residual_fraction: QALimit = QALimit(warn=2e-4, bad=None)
    temperature_spread: QALimit = QALimit(warn=2.0, bad=None)

    def __post_init__(self) -> None:
        for name in ("hot_nsigma", "hot_rate_e_s", "hot_column_rate_e_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"qc.{name} must be > 0, got {getattr(self, name)}")
        for name in ("expected_dark_current", "expected_read_noise"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"qc.{name} must be > 0, got {getattr(self, name)}")
