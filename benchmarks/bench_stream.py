"""The streaming reduction's final step against the whole-file reduction.

The sequencer hands each raw frame to :class:`reduce.online.StreamingReduction`
as it is written (``add``) and calls ``finish()`` after the last one; the
issue's target is ``finish()`` at most 1 s for N = 20 full-size one-hour
darks with a master bias. Side by side in one process, on the same seeded
synthetic frames (in the page cache), alternating ``--repeat`` times:

* ``add()`` of every frame (per-frame time printed), then ``finish()``;
* the reference: ``reduce_block()`` of the same files, the whole reduction
  the sequencer would otherwise run after the last frame.

Printed: median times, the ratio finish / reference, also the last
``add()`` plus ``finish()`` (everything after the last frame is on disk),
the load average, and PASS or FAIL for the 1 s target on ``finish()``
(exit status 1 on FAIL). The products of both are compared (every HDU
identical).

Usage::

    python benchmarks/bench_stream.py [--darks 20] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reduce.runtime import configure_process

configure_process()  # before numpy: the settings megara-dark itself runs with

import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from bench_reduce import warm_page_cache  # noqa: E402  (run beside it)

from reduce.batch import reduce_block  # noqa: E402
from reduce.online import StreamingReduction  # noqa: E402
from reduce.synthetic import make_frames  # noqa: E402

TARGET_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--darks", type=int, default=20)
    parser.add_argument("--biases", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.workdir or Path(tmp)).resolve()
        data = work / "data"
        data.mkdir(parents=True, exist_ok=True)
        make_frames(data, args.darks, args.biases)
        warm_page_cache(data)
        darks = [data / f"dark_{k:02d}.fits" for k in range(args.darks)]
        bias = reduce_block(
            block_id="bias",
            mode="MegaraBiasImage",
            frames=[data / f"bias_{k:02d}.fits" for k in range(args.biases)],
            master_bias=None,
            workdir=work,
        ).product
        load = os.getloadavg()[0]
        adds, finishes, wholes, lasts = [], [], [], []
        for _ in range(args.repeat):
            with StreamingReduction(
                block_id="stream",
                mode="MegaraDarkImage",
                nframes=args.darks,
                master_bias=bias,
                workdir=work,
            ) as stream:
                for path in darks:
                    t0 = time.perf_counter()
                    stream.add(path)
                    adds.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                streamed = stream.finish()
                finishes.append(time.perf_counter() - t0)
                lasts.append(adds[-1] + finishes[-1])
            t0 = time.perf_counter()
            whole = reduce_block(
                block_id="whole",
                mode="MegaraDarkImage",
                frames=darks,
                master_bias=bias,
                workdir=work,
            )
            wholes.append(time.perf_counter() - t0)
        with fits.open(streamed.product) as a, fits.open(whole.product) as b:
            same = len(a) == len(b) and all(
                np.array_equal(x.data, y.data, equal_nan=True)
                for x, y in zip(a[:5], b[:5], strict=True)
            )
        load = max(load, os.getloadavg()[0])
    finish, ref = statistics.median(finishes), statistics.median(wholes)
    ok = finish <= TARGET_S
    print(
        f"N={args.darks}: add() median {statistics.median(adds):.3f} s per frame "
        f"(max {max(adds):.3f}); finish() median {finish:.3f} s "
        f"(runs {', '.join(f'{t:.3f}' for t in finishes)}); reference "
        f"reduce_block() {ref:.3f} s; finish/reference {finish / ref:.2f}; "
        f"last add()+finish() median {statistics.median(lasts):.3f} s; "
        f"load average up to {load:.1f}; "
        f"all image HDUs identical: {same} [finish <= {TARGET_S:g} s: "
        f"{'PASS' if ok else 'FAIL'}]"
    )
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
