"""Soak: many frames with faults injected at random, and nothing lost.

Usage, from the repository root with the project installed::

    python benchmarks/soak.py [--frames 200] [--per-block 20] [--seed 1]
                              [--fault-every 1.0] [--keep DIR]

Starts the built-in simulators (time scale 10000, readout 0 s, so a 900 s
dark takes 0.09 s of wall time), then one ``megara-dark run`` of a bias block
and dark blocks of ``--per-block`` frames, ``--frames`` frames in all, talking
to them as to real devices ([devices] configuration). While the run goes on,
a seeded generator injects faults through the simulators' control port at
random moments (exponential intervals, mean ``--fault-every`` wall seconds),
one at a time (the next only once the last one fired), drawn from the
recoverable catalogue: short_fetch (a FETCH that stops after a fraction of
the frame, the connection kept), disconnect_readout, no_reply,
garbled_reply, late_reply (to any device) and light_leak. If the run
nevertheless ends in FAULT, the soak counts the faults that were pending as
unrecovered and resumes it as an engineer would, ``megara-dark run --resume
WORK`` with nothing else, on the same simulators (they outlive the run, as
hardware does), so the figures cover every frame requested.

Reports: frames requested, raw files written, frames written valid, frames
retaken (kept invalid), frames the reduction excluded as light leaks, faults
injected (fired, by kind), faults recovered, driver retries, and **data
lost**: exposures that started (an attempt the run logged as "exposing")
but left no raw file that passes the project's verifier (CHECKSUM, layout),
neither valid nor kept as an invalid retake. Must be 0. Exits 1 otherwise,
or if any raw file fails verification, or a block has a frame count other
than requested.

The figures are wall-time dependent (where a fault lands depends on when it
is injected), but the generator is seeded, so runs with the same seed try
the same faults in the same order.

The run's inputs, the process and the raw-file checks are
:mod:`sequencer.engineering.trial`'s (as for the campaign and the fault
matrix); the run's stderr (INFO) is ``stderr.txt`` in the kept folder.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sequencer.engineering.trial import (
    Inputs,
    check_raw_files,
    execute,
    run_argv,
    write_inputs,
)
from sequencer.journal import read_records
from sequencer.simlaunch import SimulatorProcess, megara_dark, start_simulators
from simulators.control import send_request
from simulators.control_token import read_token

SIM_ARGS = [
    "--transport", "pty", "--time-scale", "10000", "--readout-s", "0",
    "--cover-motion-s", "400", "--cover-initial", "open",
]  # fmt: skip
BIAS_ID = "bias"
EXPTIME_S = 900.0
#: Retry patterns logged by the drivers (WARNING) for each failed attempt
#: (a FETCH cut short is resumed from its first missing block).
RETRY = re.compile(
    r"(ccd: attempt \d+/\d+ failed|ccd: transfer of frame \d+ cut after"
    r"|cover \w+: attempt \d+/\d+ of)"
)
ATTEMPT = re.compile(r"INFO +(\S+): frame \d+/\d+ \(attempt (\d+)\): exposing")
DEVICES = ("ccd", "cover_left", "cover_right")


def draw_fault(rng: random.Random) -> dict[str, Any]:
    """One fault from the recoverable catalogue, with random parameters."""
    kind = rng.choices(
        [
            "short_fetch",
            "disconnect_readout",
            "no_reply",
            "garbled_reply",
            "late_reply",
            "light_leak",
        ],
        weights=[3, 2, 3, 3, 2, 1],
    )[0]
    if kind in ("short_fetch", "disconnect_readout"):
        fraction = round(rng.uniform(0.05, 0.95), 3)
        return {"device": "ccd", "kind": kind, "params": {"fraction": fraction}}
    if kind == "light_leak":
        return {
            "device": "ccd",
            "kind": kind,
            "params": {"flux": 5.0, "duration_s": EXPTIME_S},
        }
    fault: dict[str, Any] = {"device": rng.choice(DEVICES), "kind": kind}
    if kind == "late_reply":
        fault["params"] = {"delay_s": round(rng.uniform(0.2, 3.0), 2)}
    return fault


def plan_blocks(frames: int, per_block: int) -> list[dict[str, Any]]:
    """A bias block then dark blocks, ``frames`` frames in all."""
    sizes = []
    left = frames
    while left > 0:
        sizes.append(min(per_block, left))
        left -= sizes[-1]
    if len(sizes) < 2 or sizes[-1] < 3:
        raise SystemExit("soak: --frames must give a bias and dark blocks of >= 3")
    blocks: list[dict[str, Any]] = [
        {"id": BIAS_ID, "instrument": "MEGARA", "mode": "MegaraBiasImage",
         "exptime": 0.0, "nframes": sizes[0]}
    ]  # fmt: skip
    blocks += [
        {"id": f"dark{i:02d}", "instrument": "MEGARA", "mode": "MegaraDarkImage",
         "exptime": EXPTIME_S, "nframes": n}
        for i, n in enumerate(sizes[1:], start=1)
    ]  # fmt: skip
    return blocks


def write_run_inputs(
    folder: Path, sim: SimulatorProcess, blocks: list[dict[str, Any]]
) -> Inputs:
    """The blocks and a configuration naming the running simulators' ports."""
    tables: dict[str, dict[str, Any]] = {
        "devices": {name: sim.urls[name] for name in DEVICES},
        "run": {"retake_limit": 2, "poll_s": 0.05, "cover_poll_s": 0.05,
                "readout_s": 0.5, "timeout_margin_s": 30.0},
        "ccd": {"reply_timeout_s": 2.0, "block_timeout_s": 2.0, "retries": 3},
        "cover": {"reply_timeout_s": 2.0, "motion_timeout_s": 5.0, "retries": 3},
    }  # fmt: skip
    return write_inputs(folder, blocks=blocks, tables=tables, source="soak")


@dataclass
class Tally:
    """What the injector did over the whole soak."""

    fired: collections.Counter[str] = field(default_factory=collections.Counter)
    unrecovered: collections.Counter[str] = field(default_factory=collections.Counter)
    runs: list[int] = field(default_factory=list)


class Injector:
    """Arms one random fault at a time, at random moments, while a run goes on.

    Called every few milliseconds by :func:`sequencer.engineering.trial.execute`
    (its ``watch``); the next fault is armed only once the last one fired.
    """

    def __init__(
        self, sim: SimulatorProcess, token: str, rng: random.Random, every_s: float
    ) -> None:
        self.sim, self.token, self.rng, self.every_s = sim, token, rng, every_s
        self.pending = False
        self.next_at = time.monotonic() + rng.expovariate(1.0 / every_s)

    def request(self, request: dict[str, Any]) -> Any:
        return send_request(self.sim.control, request, token=self.token)

    def __call__(self) -> None:
        if time.monotonic() < self.next_at:
            return
        if self.pending:
            self.pending = bool(self.request({"op": "faults"})["pending"])
        if not self.pending:
            reply = self.request({"op": "inject", "fault": draw_fault(self.rng)})
            if not reply.get("ok"):
                raise SystemExit(f"soak: injection refused: {reply}")
            self.pending = True
        self.next_at = time.monotonic() + self.rng.expovariate(1.0 / self.every_s)


def run_once(
    command: list[str],
    sim: SimulatorProcess,
    rng: random.Random,
    fault_every: float,
    tally: Tally,
    folder: Path,
) -> int:
    """One ``megara-dark run`` (or its resume) with faults injected; its status."""
    injector = Injector(sim, read_token(sim.info["token_file"]), rng, fault_every)
    fired_before = len(injector.request({"op": "faults"})["fired"])
    done = execute(command, folder, timeout_s=None, watch=injector)
    fired = injector.request({"op": "faults"})["fired"][fired_before:]  # this run's
    for item in fired:
        tally.fired[item["fault"]["kind"]] += 1
    if done.exit_status != 0 and fired:
        # the fault that fired last is the one the run did not survive
        tally.unrecovered[fired[-1]["fault"]["kind"]] += 1
    print(done.stdout.strip(), flush=True)
    tally.runs.append(done.exit_status)
    return done.exit_status


def light_leak_exclusions(work: Path) -> int:
    count = 0
    for task in work.glob("obsid*_results/task.json"):
        for item in json.loads(task.read_text())["excluded"]:
            if "light leak" in json.dumps(item):
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--per-block", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-every", type=float, default=1.0)
    parser.add_argument("--max-resumes", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the run folder here")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    tally = Tally()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        base = args.keep or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        blocks = plan_blocks(args.frames, args.per_block)
        work = base / "work"
        sim = start_simulators([*SIM_ARGS, "--seed", str(args.seed)])
        try:
            first = run_argv(
                write_run_inputs(base, sim, blocks), work, "--log-level", "INFO"
            )
            resume = [*megara_dark(), "run", "--resume", str(work)]
            status = run_once(first, sim, rng, args.fault_every, tally, base)
            while status == 1 and len(tally.runs) <= args.max_resumes:
                status = run_once(resume, sim, rng, args.fault_every, tally, base)
        finally:
            sim.close()
        wall = time.monotonic() - start
        return report(args, base, work, tally, len(blocks), status, wall)


def report(
    args: argparse.Namespace,
    base: Path,
    work: Path,
    tally: Tally,
    nblocks: int,
    status: int,
    wall: float,
) -> int:
    text = (base / "stderr.txt").read_text(encoding="utf-8", errors="replace")
    attempts = {(m[1], int(m[2])) for m in ATTEMPT.finditer(text)}
    records, _torn = read_records(work / "run.journal")
    written = {
        (r["block"], r["attempt"]): r for r in records if r["event"] == "frame_written"
    }
    files = check_raw_files(work)
    valid_files, invalid_files = files.valid, files.invalid
    damaged = [f"{name}: {err}" for name, err in files.damaged.items()]
    on_disk = set(valid_files + invalid_files)
    lost = sorted(
        a for a in attempts if a not in written or written[a]["file"] not in on_disk
    )
    per_block = collections.Counter(name.rsplit("_", 1)[0] for name in valid_files)
    done = sum(1 for r in records if r["event"] == "block_done")
    fired = sum(tally.fired.values())
    unrecovered = sum(tally.unrecovered.values())
    head = (
        f"soak: seed {args.seed}, {nblocks} blocks, wall {wall:.0f} s, "
        f"runs {len(tally.runs)} (exit statuses {tally.runs})"
    )
    figures = [
        ("frames requested", f"{args.frames}"),
        ("exposures started", f"{len(attempts)}"),
        ("raw files written", f"{len(written)}"),
        ("frames written valid", f"{len(valid_files)}"),
        ("frames retaken", f"{len(invalid_files)} (kept, marked invalid)"),
        ("excluded as light leak", f"{light_leak_exclusions(work)} (by the reduction)"),
        ("faults injected (fired)", f"{fired}  {dict(sorted(tally.fired.items()))}"),
        (
            "faults recovered",
            f"{fired - unrecovered}"
            + (f"  (not: {dict(tally.unrecovered)})" if unrecovered else ""),
        ),
        ("driver retries", f"{len(RETRY.findall(text))}"),
        ("blocks done", f"{done}/{nblocks}"),
        ("damaged raw files", f"{len(damaged)}"),
        ("data lost", f"{len(lost)}" + (f"  {lost}" if lost else "")),
    ]
    lines = [head] + [f"{label:<25}{value}" for label, value in figures]
    print("\n".join(lines))
    for item in damaged:
        print("  damaged:", item)
    short = {b: n for b, n in per_block.items() if n < args.per_block}
    ok = (
        status == 0
        and not lost
        and not damaged
        and len(valid_files) == args.frames
        and done == nblocks
    )
    if not ok:
        print(
            f"soak: FAIL (exit {status}; valid frames per block {dict(per_block)}; "
            f"short blocks {short}); logs in {base}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
