"""Calibration sets from an archive's frames, and the bias for each dark set."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from reduce.archive.pairing import DarkPlan, pair_biases
from reduce.archive.scan import RawEntry
from reduce.archive.sets import CalibrationSet, group_sets, night_of
from reduce.errors import SettingsError
from reduce.rawframe import Mode

_inodes = itertools.count(1000)


def at(text: str) -> datetime:
    """A UTC time from ``YYYY-MM-DD hh:mm:ss``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def frame(
    name: str,
    when: datetime,
    *,
    mode: Mode = Mode.DARK,
    exptime_s: float | None = None,
    uuid: str | None = None,
    block: str | None = None,
    simulated: bool = False,
    inode: int | None = None,
) -> RawEntry:
    if exptime_s is None:
        exptime_s = 0.0 if mode is Mode.BIAS else 600.0
    return RawEntry(
        path=Path("/archive") / name,
        uuid=uuid,
        block_uuid=block,
        mode=mode,
        date_obs=when,
        exptime_s=exptime_s,
        simulated=simulated,
        file_id=(1, next(_inodes) if inode is None else inode),
        size=35_000_000,
    )


def series(
    prefix: str,
    start: datetime,
    count: int,
    *,
    mode: Mode = Mode.DARK,
    exptime_s: float | None = None,
    step_s: float | None = None,
    block: str | None = None,
    simulated: bool = False,
) -> list[RawEntry]:
    """``count`` frames one after another (every exposure plus 60 s)."""
    if exptime_s is None:
        exptime_s = 0.0 if mode is Mode.BIAS else 600.0
    step = exptime_s + 60.0 if step_s is None else step_s
    return [
        frame(
            f"{prefix}_{k:02d}.fits",
            start + timedelta(seconds=k * step),
            mode=mode,
            exptime_s=exptime_s,
            block=block,
            simulated=simulated,
        )
        for k in range(count)
    ]


# --- night_of -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "night"),
    [
        (at("2026-11-28 01:00:00"), date(2026, 11, 27)),  # after midnight
        (at("2026-11-28 11:59:59"), date(2026, 11, 27)),
        (at("2026-11-28 12:00:00"), date(2026, 11, 28)),
        (at("2026-11-28 23:00:00"), date(2026, 11, 28)),
        (at("2027-01-01 00:30:00"), date(2026, 12, 31)),
    ],
)
def test_night_runs_noon_to_noon(when: datetime, night: date) -> None:
    assert night_of(when) == night


def test_night_of_another_boundary() -> None:
    assert night_of(at("2026-11-28 01:00:00"), 0.0) == date(2026, 11, 28)
    assert night_of(at("2026-11-28 08:00:00"), 8.5) == date(2026, 11, 27)
    assert night_of(at("2026-11-28 08:30:00"), 8.5) == date(2026, 11, 28)


def test_night_of_a_time_in_another_zone_is_by_utc() -> None:
    canary_summer = timezone(timedelta(hours=1))
    when = datetime(2026, 6, 28, 12, 30, tzinfo=canary_summer)  # 11:30 UTC
    assert night_of(when) == date(2026, 6, 27)


@pytest.mark.parametrize("boundary", [-1.0, 24.0, float("nan")])
def test_night_boundary_outside_the_day(boundary: float) -> None:
    with pytest.raises(SettingsError, match="expected 0 <= hour < 24"):
        night_of(at("2026-11-28 01:00:00"), boundary)
    with pytest.raises(SettingsError):
        group_sets([], boundary_hour_utc=boundary)


def test_night_of_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        night_of(datetime(2026, 11, 28, 1))


# --- group_sets -----------------------------------------------------------------


def test_one_block_one_set() -> None:
    block = "5f1c2a3b-aaaa-4000-8000-000000000001"
    frames = series("d", at("2026-11-28 18:00:00"), 5, block=block)

    sets, problems = group_sets(frames)

    assert problems == []
    [found] = sets
    assert found.frames == tuple(frames)
    assert found.night == date(2026, 11, 28)
    assert found.mode is Mode.DARK
    assert found.exptime_s == 600.0
    assert found.block_uuid == block
    assert found.set_id == "20261128_dark_5f1c2a3b"
    assert found.first_obs == at("2026-11-28 18:00:00")


def test_a_set_without_block_is_named_by_its_first_time() -> None:
    frames = series("b", at("2026-11-29 02:03:04"), 3, mode=Mode.BIAS)

    [found], _ = group_sets(frames)

    assert found.set_id == "20261128_bias_020304"
    assert found.block_uuid is None


def test_frames_sorted_by_time_then_path() -> None:
    same = at("2026-11-28 18:00:00")
    frames = [
        frame("c.fits", same + timedelta(seconds=700)),
        frame("b.fits", same),
        frame("a.fits", same),
    ]

    [found], _ = group_sets(frames)

    assert [f.path.name for f in found.frames] == ["a.fits", "b.fits", "c.fits"]


def test_duplicate_uuid_keeps_the_first_path() -> None:
    frames = series("n1/d", at("2026-11-28 18:00:00"), 3)
    frames = [
        frame(f.path.name, f.date_obs, uuid=f"u{k}") for k, f in enumerate(frames)
    ]
    copy = frame("z_copy/d_01.fits", frames[1].date_obs, uuid="u1")
    earlier = frame("a_copy/d_02.fits", frames[2].date_obs, uuid="u2")

    sets, problems = group_sets([copy, *frames, earlier])

    [found] = sets
    assert [f.path.as_posix() for f in found.frames] == [
        "/archive/d_00.fits",
        "/archive/d_01.fits",
        "/archive/a_copy/d_02.fits",  # first by path
    ]
    assert [p.what for p in problems] == [
        "/archive/d_02.fits",
        "/archive/z_copy/d_01.fits",
    ]
    assert problems[1].reason.startswith(
        "duplicate of /archive/d_01.fits (same UUID u1)"
    )
    assert problems[1].files == (copy.path, frames[1].path)


def test_duplicate_by_hard_link_without_uuid() -> None:
    frames = series("d", at("2026-11-28 18:00:00"), 3)
    link = frame("e_link.fits", frames[0].date_obs, inode=frames[0].file_id[1])

    sets, problems = group_sets([*frames, link])

    assert len(sets[0].frames) == 3
    [problem] = problems
    assert problem.what == "/archive/e_link.fits"
    assert "duplicate of /archive/d_00.fits (the same file" in problem.reason


def test_frames_without_uuid_on_distinct_files_are_kept() -> None:
    frames = series("d", at("2026-11-28 18:00:00"), 3)
    twin = frame("e.fits", frames[0].date_obs)  # same time, another file

    sets, problems = group_sets([*frames, twin])

    assert problems == []
    assert len(sets[0].frames) == 4


@pytest.mark.parametrize(
    ("changes", "mix"),
    [
        ({"mode": Mode.BIAS, "exptime_s": 600.0}, "mixes modes MegaraBiasImage, "),
        ({"exptime_s": 601.0}, "mixes exposure times 600, 601 s"),
        ({"simulated": True}, "mixes simulated and real frames"),
    ],
)
def test_a_mixed_block_gives_no_set(changes: dict[str, object], mix: str) -> None:
    block = "b10c0000-0000-4000-8000-000000000009"
    frames = series("d", at("2026-11-28 18:00:00"), 4, block=block)
    odd = frames[2]
    mode = changes.get("mode", odd.mode)
    exptime = changes.get("exptime_s", odd.exptime_s)
    simulated = changes.get("simulated", odd.simulated)
    assert isinstance(mode, Mode)
    assert isinstance(exptime, float)
    assert isinstance(simulated, bool)
    frames[2] = frame(
        "d_02.fits",
        odd.date_obs,
        mode=mode,
        exptime_s=exptime,
        block=block,
        simulated=simulated,
    )

    sets, problems = group_sets(frames)

    assert sets == []
    [problem] = problems
    assert problem.what == f"20261128 block {block}"
    assert mix in problem.reason
    assert "no product" in problem.reason
    assert problem.files == tuple(f.path for f in frames)


def test_a_block_within_the_exptime_tolerance_is_one_set() -> None:
    block = "b10c0000-0000-4000-8000-000000000010"
    frames = series("d", at("2026-11-28 18:00:00"), 3, block=block)
    frames.append(
        frame("d_09.fits", at("2026-11-28 18:40:00"), exptime_s=600.3, block=block)
    )

    sets, problems = group_sets(frames)

    assert problems == []
    assert len(sets[0].frames) == 4


def test_a_block_is_never_cut_at_the_night_boundary() -> None:
    # One-hour darks from 09:00 to 14:00 UTC: the night of the first frame.
    block = "0ac0ffee-0000-4000-8000-000000000000"
    frames = series("d", at("2026-11-28 09:00:00"), 5, exptime_s=3600.0, block=block)

    [found], problems = group_sets(frames)

    assert problems == []
    assert found.night == date(2026, 11, 27)
    assert len(found.frames) == 5


def test_exposure_times_without_block_make_two_sets() -> None:
    short = series("s", at("2026-11-28 18:00:00"), 3, exptime_s=300.0)
    long = series("l", at("2026-11-28 18:05:00"), 3, exptime_s=900.0, step_s=120)

    sets, problems = group_sets(short + long)

    assert problems == []
    assert [(s.exptime_s, len(s.frames)) for s in sets] == [(300.0, 3), (900.0, 3)]
    assert {f.path.name[0] for f in sets[0].frames} == {"s"}


def test_exposure_times_within_tolerance_without_block_are_one_set() -> None:
    frames = series("d", at("2026-11-28 18:00:00"), 2, exptime_s=600.0)
    frames.append(frame("d_09.fits", at("2026-11-28 18:30:00"), exptime_s=600.5))

    sets, _ = group_sets(frames)

    assert [len(s.frames) for s in sets] == [3]


def test_a_pause_longer_than_exposure_plus_gap_splits() -> None:
    start = at("2026-11-28 18:00:00")
    first = series("a", start, 3, exptime_s=600.0)
    last = first[-1].date_obs
    # Exactly exposure + gap after the last one: still the same set.
    edge = frame("b.fits", last + timedelta(seconds=600 + 900))
    # One second more after that: a new set.
    later = series("c", edge.date_obs + timedelta(seconds=1501), 3, exptime_s=600.0)

    sets, problems = group_sets([*first, edge, *later], gap_s=900.0)

    assert problems == []
    assert [len(s.frames) for s in sets] == [4, 3]
    assert sets[1].frames[0].path.name == "c_00.fits"


def test_a_long_exposure_is_not_a_pause() -> None:
    frames = series("d", at("2026-11-28 18:00:00"), 3, exptime_s=3600.0)

    sets, _ = group_sets(frames, gap_s=60.0)

    assert [len(s.frames) for s in sets] == [3]


def test_too_few_frames_is_a_problem_not_a_set() -> None:
    biases = series("b", at("2026-11-28 17:00:00"), 2, mode=Mode.BIAS)
    darks = series("d", at("2026-11-28 18:00:00"), 3)

    sets, problems = group_sets(biases + darks)

    assert [s.mode for s in sets] == [Mode.DARK]
    [problem] = problems
    assert problem.what == "20261128_bias_170000"
    assert problem.reason == "2 frame(s), fewer than the minimum 3"
    assert problem.files == tuple(f.path for f in biases)
    assert len(group_sets(biases, min_frames=2)[0]) == 1


def test_simulated_and_real_never_mixed_without_block() -> None:
    start = at("2026-11-28 18:00:00")
    real = series("r", start, 3)
    simulated = series("s", start + timedelta(seconds=30), 3, simulated=True)

    sets, problems = group_sets(real + simulated)

    assert problems == []
    assert len(sets) == 2
    for found in sets:
        assert {f.simulated for f in found.frames} == {found.simulated}


def test_set_ids_never_collide() -> None:
    start = at("2026-11-28 18:00:00")
    real = series("r", start, 3)
    simulated = series("s", start, 3, simulated=True)
    block_a = series("a", start + timedelta(hours=2), 3, block="abcdef01-1111")
    block_b = series("b", start + timedelta(hours=3), 3, block="abcdef01-2222")

    sets, _ = group_sets(real + simulated + block_a + block_b)

    ids = [s.set_id for s in sets]
    assert len(set(ids)) == 4
    assert ids == [
        "20261128_dark_180000",
        "20261128_dark_180000-2",
        "20261128_dark_abcdef01",
        "20261128_dark_abcdef01-2",
    ]


def test_output_order_is_deterministic() -> None:
    frames = (
        series("n2", at("2026-11-29 18:00:00"), 3)
        + series("n1b", at("2026-11-28 20:00:00"), 3, mode=Mode.BIAS)
        + series("n1d", at("2026-11-28 18:00:00"), 3, block="0000ffff-1")
        + series("x", at("2026-11-28 19:00:00"), 1)
    )
    expected = group_sets(frames)
    shuffled = frames[:]
    random.Random(7).shuffle(shuffled)

    assert group_sets(shuffled) == expected
    assert [(s.night.day, s.first_obs.hour) for s in expected[0]] == [
        (28, 18),
        (28, 20),
        (29, 18),
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {"gap_s": -1.0},
        {"min_frames": 0},
        {"exptime_rtol": -0.1},
        {"exptime_rtol": 1.0},
    ],
)
def test_invalid_settings(settings: dict[str, float]) -> None:
    with pytest.raises(SettingsError, match="expected"):
        group_sets([], **settings)  # type: ignore[arg-type]


# --- pair_biases ----------------------------------------------------------------


def sets_of(*groups: list[RawEntry]) -> list[CalibrationSet]:
    sets, problems = group_sets([f for group in groups for f in group])
    assert problems == []
    return sets


def test_bias_of_the_same_night_before_the_darks() -> None:
    early = series("b1", at("2026-11-28 15:00:00"), 3, mode=Mode.BIAS)
    before = series("b2", at("2026-11-28 17:00:00"), 3, mode=Mode.BIAS)
    after = series("b3", at("2026-11-28 22:00:00"), 3, mode=Mode.BIAS)
    darks = series("d", at("2026-11-28 18:00:00"), 3)

    [plan], problems = pair_biases(sets_of(early, before, darks, after))

    assert problems == []
    assert plan.bias is not None
    assert plan.bias.frames[0].path.name == "b2_00.fits"
    assert plan.note == ""


def test_bias_of_the_same_night_after_the_darks() -> None:
    darks = series("d", at("2026-11-28 13:00:00"), 3)
    first = series("b1", at("2026-11-28 20:00:00"), 3, mode=Mode.BIAS)
    last = series("b2", at("2026-11-29 07:00:00"), 3, mode=Mode.BIAS)  # same night

    [plan], _ = pair_biases(sets_of(darks, first, last))

    assert plan.bias is not None
    assert plan.bias.frames[0].path.name == "b2_00.fits"  # the night's last
    assert plan.note == ""


def test_bias_of_the_nearest_earlier_night() -> None:
    older = series("b0", at("2026-11-25 17:00:00"), 3, mode=Mode.BIAS)
    nearest = series("b1", at("2026-11-27 15:00:00"), 3, mode=Mode.BIAS)
    nearest_late = series("b2", at("2026-11-27 20:00:00"), 3, mode=Mode.BIAS)
    future = series("b3", at("2026-11-29 17:00:00"), 3, mode=Mode.BIAS)
    darks = series("d", at("2026-11-28 18:00:00"), 3)

    [plan], problems = pair_biases(sets_of(older, nearest, nearest_late, darks, future))

    assert problems == []
    assert plan.bias is not None
    assert plan.bias.frames[0].path.name == "b2_00.fits"
    assert plan.note == "master bias of 2026-11-27 (nearest earlier night)"


def test_no_bias_on_or_before_the_night() -> None:
    darks = series("d", at("2026-11-28 18:00:00"), 3)
    future = series("b", at("2026-11-29 17:00:00"), 3, mode=Mode.BIAS)
    sets = sets_of(darks, future)

    plans, problems = pair_biases(sets)

    assert plans == [DarkPlan(sets[0], None, problems[0].reason)]
    [problem] = problems
    assert problem.what == "20261128_dark_180000"
    assert problem.reason.startswith("no master bias on or before 2026-11-28")
    assert problem.files == tuple(f.path for f in darks)


def test_simulated_and_real_pair_only_with_their_own() -> None:
    sim_bias = series(
        "sb", at("2026-11-28 17:00:00"), 3, mode=Mode.BIAS, simulated=True
    )
    sim_darks = series("sd", at("2026-11-28 18:00:00"), 3, simulated=True)
    real_darks = series("rd", at("2026-11-28 19:00:00"), 3)

    plans, problems = pair_biases(sets_of(sim_bias, sim_darks, real_darks))

    by_prefix = {p.dark.frames[0].path.name[:2]: p for p in plans}
    simulated_bias = by_prefix["sd"].bias
    assert simulated_bias is not None
    assert simulated_bias.simulated
    assert by_prefix["rd"].bias is None
    [problem] = problems
    assert problem.what == by_prefix["rd"].dark.set_id
    assert "no master bias on or before 2026-11-28" in problem.reason
    assert "real" in problem.reason


def test_real_bias_is_not_used_for_simulated_darks() -> None:
    real_bias = series("rb", at("2026-11-27 17:00:00"), 3, mode=Mode.BIAS)
    sim_darks = series("sd", at("2026-11-28 18:00:00"), 3, simulated=True)

    [plan], [problem] = pair_biases(sets_of(real_bias, sim_darks))

    assert plan.bias is None
    assert "simulated" in problem.reason


def test_only_bias_sets_no_plans() -> None:
    biases = series("b", at("2026-11-28 17:00:00"), 3, mode=Mode.BIAS)

    assert pair_biases(sets_of(biases)) == ([], [])
