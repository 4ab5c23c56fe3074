"""Each dark set of an archive paired with the bias set to reduce it with.

Pure functions of the :class:`~reduce.archive.sets.CalibrationSet` list.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reduce.archive.sets import CalibrationSet, SetProblem, set_order
from reduce.rawframe import Mode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DarkPlan:
    """A dark set and the bias set to reduce it with.

    Attributes
    ----------
    dark
        The dark set.
    bias
        Its bias set, or None when there is none on or before its night.
    note
        ``""`` when the bias is of the dark's night, else where it comes from.
    """

    dark: CalibrationSet
    bias: CalibrationSet | None
    note: str


def pair_biases(
    sets: Iterable[CalibrationSet],
) -> tuple[list[DarkPlan], list[SetProblem]]:
    """Each dark set with the bias set to reduce it with.

    A dark set takes a bias set of its own night (the last one that starts
    before the darks' first frame, else the night's last), else the last one
    of the nearest earlier night. Simulated darks take only simulated
    biases, real darks real ones.

    Returns
    -------
    tuple
        One plan per dark set, in night and time order (``bias`` None when
        there is none); a problem per dark set without a bias.
    """
    ordered = sorted(sets, key=set_order)
    plans: list[DarkPlan] = []
    problems: list[SetProblem] = []
    for dark in (s for s in ordered if s.mode is Mode.DARK):
        biases = [
            s for s in ordered if s.mode is Mode.BIAS and s.simulated == dark.simulated
        ]
        bias = _bias_for(dark, biases)
        if bias is None:
            origin = "simulated" if dark.simulated else "real"
            reason = (
                f"no master bias on or before {dark.night:%Y-%m-%d} "
                f"(among the {origin} bias sets); reduced without a bias if at all"
            )
            problems.append(SetProblem(dark.set_id, reason, dark.paths))
            plans.append(DarkPlan(dark, None, reason))
        elif bias.night == dark.night:
            plans.append(DarkPlan(dark, bias, ""))
        else:
            note = f"master bias of {bias.night:%Y-%m-%d} (nearest earlier night)"
            plans.append(DarkPlan(dark, bias, note))
    return plans, problems


def _bias_for(
    dark: CalibrationSet, biases: Sequence[CalibrationSet]
) -> CalibrationSet | None:
    """The bias set for ``dark`` among ``biases`` (sorted by night and time)."""
    same_night = [b for b in biases if b.night == dark.night]
    if same_night:
        before = [b for b in same_night if b.first_obs < dark.first_obs]
        return (before or same_night)[-1]
    earlier = [b for b in biases if b.night < dark.night]
    if not earlier:
        return None
    nearest = earlier[-1].night
    return [b for b in earlier if b.night == nearest][-1]
