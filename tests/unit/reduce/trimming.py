"""A raw frame overscan-corrected and trimmed in memory, for the tests.

The reduction does this band by band from the file: :func:`reduce.frames.
inspect_frame` fits both amplifiers' overscan models and
:func:`reduce.engine.subtract_model` subtracts them. Tests that need a
trimmed frame of an array build it here from those same two functions.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from reduce.engine import subtract_model
from reduce.geometry import AMPLIFIERS, TRIMMED_SHAPE
from reduce.overscan import OverscanModel, fit_overscan


def preprocess(
    raw: npt.NDArray[np.generic],
) -> tuple[npt.NDArray[np.float32], tuple[OverscanModel, OverscanModel]]:
    """The trimmed float32 frame (ADU) and both amplifiers' overscan models."""
    amp1, amp2 = AMPLIFIERS
    models = (
        fit_overscan(raw[amp1.raw_overscan], amp1),
        fit_overscan(raw[amp2.raw_overscan], amp2),
    )
    out = np.empty(TRIMMED_SHAPE, dtype=np.float32)
    for amp, model in zip(AMPLIFIERS, models, strict=True):
        subtract_model(raw[amp.raw_data], model.model, out[amp.trimmed_rows])
    return out, models
