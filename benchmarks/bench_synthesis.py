"""Time the synthesis of one full-size MEGARA raw dark frame.

Run with the project installed (``pip install -e .``)::

    python benchmarks/bench_synthesis.py [--repeat N]

It times :meth:`simulators.synthesis.Detector.frame` (a 3600 s dark, the
median of ``--repeat`` runs after one warm-up) and, when the official MEGARA
pipeline is importable (``pip install '.[compat]'``), megaradrp's
``simulation.actions.simulate_dark`` on the same geometry (4212 x 4196 raw, 50
prescan columns, 50 overscan rows per amplifier) in the same process, and
prints both times and their ratio. The requirement is a frame in at most
0.6 s, and at least 5 times faster than megaradrp.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from simulators.synthesis import SHAPE, Detector, DetectorConfig

EXPTIME_S = 3600.0
BUDGET_S = 0.6
REQUIRED_RATIO = 5.0


def median_time(make: Callable[[int], Any], repeat: int) -> float:
    """Median wall time of ``make(i)`` over ``repeat`` calls, after a warm-up."""
    make(-1)
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        make(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(repeat: int) -> float:
    """Median seconds per frame of our synthesis."""
    config = DetectorConfig()
    detector = Detector(config)

    def make(i: int) -> Any:
        frame = detector.frame(
            exptime_s=EXPTIME_S,
            temperature_k=config.dark_ref_temp_k,
            frame_seed=i + 1,
        )
        assert frame.shape == SHAPE
        return frame

    return median_time(make, repeat)


def megaradrp_reference(repeat: int) -> float | None:
    """Median seconds per frame of megaradrp's simulate_dark, or None."""
    try:
        # Optional reference, imported only if present.
        from megaradrp.instrument.components.detector import (  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: PLC0415
            MegaraDetector,
            ReadParams,
        )
        from megaradrp.simulation.actions import (  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: PLC0415
            simulate_dark,
        )
    except ImportError:
        return None
    config = DetectorConfig()
    read = [
        ReadParams(gain=g, ron=rn / g, bias=b)
        for g, rn, b in zip(
            config.gains, config.read_noise_e, config.bias_adu, strict=True
        )
    ]
    n_over, n_pre = 50, 50
    detector = MegaraDetector(
        "bench",
        (SHAPE[0] - 2 * n_over, SHAPE[1] - 2 * n_pre),
        n_over,
        n_pre,
        dark=config.dark_ref_e_per_h / 3600.0,
        readpars1=read[0],
        readpars2=read[1],
    )

    def make(_: int) -> Any:
        frame = simulate_dark(detector, EXPTIME_S)
        assert frame.shape == SHAPE
        return frame

    return median_time(make, repeat)


def main() -> int:
    """Run the benchmark and print the figures; exit 1 if over budget."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    t_ours = ours(args.repeat)
    print(f"megara-dark synthesis: {t_ours:.3f} s per {SHAPE} frame (median)")
    t_ref = megaradrp_reference(max(3, args.repeat // 2))
    if t_ref is None:
        print(
            "megaradrp not importable: no reference timing "
            "(pip install '.[compat]' in a separate environment to compare)"
        )
    else:
        ratio = t_ref / t_ours
        print(f"megaradrp simulate_dark: {t_ref:.3f} s per frame (median)")
        print(f"speed-up: {ratio:.1f}x (required >= {REQUIRED_RATIO:.0f}x)")
    ok = t_ours <= BUDGET_S and (t_ref is None or t_ref / t_ours >= REQUIRED_RATIO)
    print("PASS" if ok else "FAIL", f"(budget {BUDGET_S} s per frame)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
