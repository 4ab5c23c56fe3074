"""StreamingReduction (the sequencer's online path) equals reduce_block."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.io import fits

from reduce import pipeline
from reduce.batch import reduce_block
from reduce.checks import frame_rate
from reduce.errors import InputError
from reduce.frames import inspect_frame
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS, TRIMMED_SHAPE
from reduce.online import StreamingReduction
from reduce.productfile import ProductFile
from reduce.qc import QAReport
from reduce.rawframe import Mode
from reduce.settings import Options
from reduce.synthetic import raw_header, write_raw

from .conftest import DARK_S, Campaign

HDUS = ("PRIMARY", "VARIANCE", "MAP", "DARKRATE", "DQ")


def _header(exptime: float, obsmode: str, k: int, **extra: Any) -> dict[str, Any]:
    header = raw_header(exptime, obsmode=obsmode)
    header["UUID"] = str(uuid.UUID(int=k + (1 << 64)))
    header.update(extra)
    return header


@dataclass(frozen=True)
class Files:
    biases: list[Path]
    darks: list[Path]  # the last one is marked invalid by the sequencer
    master_bias: Path


@pytest.fixture(scope="module")
def files(campaign: Campaign, tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("stream")
    biases, darks = [], []
    for k, raw in enumerate(campaign.biases):
        biases.append(folder / f"bias_{k}.fits")
        write_raw(biases[-1], raw, _header(0.0, "MegaraBiasImage", k))
    for k, raw in enumerate(campaign.darks):
        darks.append(folder / f"dark_{k}.fits")
        write_raw(darks[-1], raw, _header(DARK_S, "MegaraDarkImage", 10 + k))
    darks.append(folder / "dark_invalid.fits")
    invalid = _header(DARK_S, "MegaraDarkImage", 99, INTLKOK=False, INTLKWHY="cover")
    write_raw(darks[-1], campaign.darks[0], invalid)
    bias = reduce_block(
        block_id="bias",
        mode="MegaraBiasImage",
        frames=biases,
        master_bias=None,
        workdir=folder / "work",
    )
    return Files(biases, darks, bias.product)


def _hdus(path: Path) -> dict[str, np.ndarray[Any, Any]]:
    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        return {n: np.array(hdul[n].data) for n in HDUS if n in names}


def _assert_same_products(a: Path, b: Path) -> None:
    ours, theirs = _hdus(a), _hdus(b)
    assert set(ours) == set(theirs)
    for name in ours:
        assert np.array_equal(ours[name], theirs[name], equal_nan=True), name
    qa = [json.loads((p.parent / "result.json").read_text())["qc"] for p in (a, b)]
    assert qa[0] == qa[1]
    tasks = [json.loads((p.parent / "task.json").read_text()) for p in (a, b)]
    assert tasks[0]["qa"] == tasks[1]["qa"]
    assert tasks[0]["qc"] == tasks[1]["qc"]


@pytest.mark.parametrize("mode", ["MegaraDarkImage", "MegaraBiasImage"])
def test_streaming_products_equal_reduce_block(
    files: Files, tmp_path: Path, mode: str
) -> None:
    dark = mode == "MegaraDarkImage"
    frames = files.darks if dark else files.biases
    bias = files.master_bias if dark else None
    whole = reduce_block(
        block_id="x", mode=mode, frames=frames, master_bias=bias, workdir=tmp_path / "a"
    )
    with StreamingReduction(
        block_id="x",
        mode=mode,
        nframes=len(frames) - 1,  # one frame more than planned: grows
        master_bias=bias,
        workdir=tmp_path / "b",
    ) as stream:
        for path in frames:
            stream.add(path)
        result = stream.finish()
    assert result.n_used == whole.n_used == 3  # the invalid dark is excluded
    assert [e.name for e in result.excluded] == [e.name for e in whole.excluded]
    assert result.qa == whole.qa
    assert result.reasons == whole.reasons
    assert result.folder == tmp_path / "b" / "obsidx_results"
    _assert_same_products(result.product, whole.product)
    leftovers = [p.name for p in result.folder.iterdir()]
    assert sorted(leftovers) == sorted(p.name for p in whole.folder.iterdir())


def test_add_names_the_bad_file(files: Files, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.fits"
    bad.write_bytes(files.darks[0].read_bytes()[:100_000])
    with StreamingReduction(
        block_id="x",
        mode="MegaraDarkImage",
        nframes=2,
        master_bias=files.master_bias,
        workdir=tmp_path,
    ) as stream:
        with pytest.raises(InputError, match=r"truncated\.fits"):
            stream.add(bad)
        with pytest.raises(InputError, match="OBSMODE"):
            stream.add(files.biases[0])
        stream.add(files.darks[0])
        assert stream.n_added == 1


def test_too_few_frames_and_bad_mode(files: Files, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mode 'Dark'"):
        StreamingReduction(
            block_id="x", mode="Dark", nframes=1, master_bias=None, workdir=tmp_path
        )
    with StreamingReduction(
        block_id="x",
        mode="MegaraDarkImage",
        nframes=3,
        master_bias=files.master_bias,
        workdir=tmp_path,
        options=Options(min_frames=2),
    ) as stream:
        stream.add(files.darks[0])
        stream.add(files.darks[-1])  # invalid: excluded
        with pytest.raises(InputError, match="fewer than the minimum 2"):
            stream.finish()


def test_running_median_is_a_nameless_file_released_at_close(
    files: Files, tmp_path: Path
) -> None:
    stream = StreamingReduction(
        block_id="s",
        mode="MegaraDarkImage",
        nframes=3,
        master_bias=files.master_bias,
        workdir=tmp_path,
    )
    folder = tmp_path / "obsids_results"
    for path in files.darks:  # three valid frames combined, the invalid one not
        stream.add(path)
    # first frame, two sums, ranks 0..N//2: 3 + 2 planes for N = 3
    assert stream.scratch_bytes == 5 * 4112 * 4096 * 4
    # nameless: a run killed now leaves nothing behind in the product folder
    assert [p.name for p in folder.iterdir()] == []
    stream.close()
    assert stream.scratch_bytes == 0
    with pytest.raises(InputError, match="closed"):
        stream.add(files.darks[0])


def test_more_frames_than_planned_drop_the_running_median(
    files: Files, tmp_path: Path
) -> None:
    with StreamingReduction(
        block_id="s",
        mode="MegaraDarkImage",
        nframes=2,
        master_bias=files.master_bias,
        workdir=tmp_path,
    ) as stream:
        folder = tmp_path / "obsids_results"
        stream.add(files.darks[0])
        stream.add(files.darks[1])
        assert stream.scratch_bytes > 0
        stream.add(files.darks[2])  # a third valid frame: the window is too small
        assert stream.scratch_bytes == 0
        assert [p.name for p in folder.iterdir()] == []
        result = stream.finish()
    assert result.n_used == 3
    log = (result.folder / "processing.log").read_text()
    assert "running median abandoned" in log
    whole = reduce_block(
        block_id="s",
        mode="MegaraDarkImage",
        frames=files.darks[:3],
        master_bias=files.master_bias,
        workdir=tmp_path / "whole",
    )
    _assert_same_products(result.product, whole.product)


def test_fewer_frames_than_planned_use_the_running_median(
    files: Files, tmp_path: Path
) -> None:
    with StreamingReduction(
        block_id="s",
        mode="MegaraDarkImage",
        nframes=6,
        master_bias=files.master_bias,
        workdir=tmp_path,
    ) as stream:
        for path in files.darks:
            stream.add(path)
        result = stream.finish()
    log = (result.folder / "processing.log").read_text()
    assert "median read from the running window" in log
    whole = reduce_block(
        block_id="s",
        mode="MegaraDarkImage",
        frames=files.darks,
        master_bias=files.master_bias,
        workdir=tmp_path / "whole",
    )
    _assert_same_products(result.product, whole.product)


def test_a_header_without_room_moves_the_data_and_stays_valid(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs: dict[str, Any] = {
        "block_id": "x",
        "mode": "MegaraDarkImage",
        "frames": files.darks,
        "master_bias": files.master_bias,
    }
    roomy = reduce_block(**kwargs, workdir=tmp_path / "a")
    # No room kept, and 60 more QA reasons than the provisional header had.
    monkeypatch.setattr("reduce.productfile.PRIMARY_SLACK_CARDS", 0)
    real = pipeline.final_report

    def many(*args: Any) -> QAReport:
        report = real(*args)
        more = tuple(f"reason {k}" for k in range(60))
        return dataclasses.replace(report, reasons=(*report.reasons, *more))

    monkeypatch.setattr(pipeline, "final_report", many)
    moved = reduce_block(**kwargs, workdir=tmp_path / "b")
    roomy_hdus, moved_hdus = _hdus(roomy.product), _hdus(moved.product)
    for name, data in roomy_hdus.items():
        assert np.array_equal(data, moved_hdus[name], equal_nan=True), name
    with fits.open(moved.product, checksum=True) as hdul:
        assert all(h.verify_checksum() == 1 for h in hdul)
        last = hdul[0].header["QANREAS"]
        assert hdul[0].header[f"QAREAS{last}"] == "reason 59"
    log = (moved.folder / "processing.log").read_text()
    assert "outgrew its room" in log
    assert not [p for p in moved.folder.iterdir() if p.name.startswith(".")]


def test_a_write_failure_leaves_no_product_and_no_temporary(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ProductFile, "write_rows", disk_full)
    with pytest.raises(OSError, match="No space"):
        reduce_block(
            block_id="x",
            mode="MegaraDarkImage",
            frames=files.darks,
            master_bias=files.master_bias,
            workdir=tmp_path,
        )
    assert list((tmp_path / "obsidx_results").iterdir()) == []


def _mapped(path: Path) -> bool:
    maps = Path("/proc/self/maps")
    return maps.exists() and str(path.resolve()) in maps.read_text()


def test_a_mapped_inspection_equals_a_read_one_and_unmaps(files: Files) -> None:
    # Batch inspections map the file (no copy of it); the streaming path reads
    # it into a buffer its sink may modify. Both must learn the same things,
    # and the map must be gone afterwards (or mapped frames would pile up).
    path = files.darks[1]
    received: list[np.ndarray[Any, Any]] = []
    mapped = inspect_frame(path, Mode.DARK)
    read = inspect_frame(path, Mode.DARK, sink=lambda words, _: received.append(words))
    assert not _mapped(path)
    assert (mapped.sha256, mapped.checksum) == (read.sha256, read.checksum)
    assert mapped.checksum == "verified"
    assert mapped.sample_level == read.sample_level
    for ours, theirs in zip(mapped.overscan, read.overscan, strict=True):
        assert np.array_equal(ours.model, theirs.model)
    assert len(received) == 1
    assert received[0].flags.writeable


def test_cosmic_rays_in_the_overscan_do_not_look_like_light(
    campaign: Campaign, tmp_path: Path
) -> None:
    # A storm in the overscan columns (1% of them hit, up to saturation) once
    # moved the frame's measured level by tens of ADU: the light-leak check
    # then excluded good darks. The level must stay where the clean frame's is.
    raw = campaign.darks[0].copy()
    rng = np.random.default_rng(21)
    for amp in AMPLIFIERS:
        strip = raw[amp.raw_overscan]
        hit = rng.random(strip.shape) < 0.01
        bumped = strip.astype(np.float64)
        bumped[hit] += rng.uniform(100.0, 1e5, int(hit.sum()))
        raw[amp.raw_overscan] = np.clip(bumped, 0, 65535).astype(np.uint16)
    header = _header(DARK_S, "MegaraDarkImage", 50)
    write_raw(tmp_path / "clean.fits", campaign.darks[0], header)
    write_raw(tmp_path / "storm.fits", raw, header)
    clean = inspect_frame(tmp_path / "clean.fits", Mode.DARK)
    storm = inspect_frame(tmp_path / "storm.fits", Mode.DARK)
    for k in range(len(AMPLIFIERS)):
        assert abs(storm.sample_level[k] - clean.sample_level[k]) < 0.05
        assert storm.overscan[k].residual_rms == pytest.approx(
            clean.overscan[k].residual_rms, rel=0.03
        )
    assert abs(frame_rate(storm) - frame_rate(clean)) < 1e-4  # e-/pix/s


@pytest.mark.parametrize(("fraction", "refused"), [(0.02, False), (0.6, True)])
def test_crowded_saturated_hot_pixels_are_not_garbage(
    campaign: Campaign, tmp_path: Path, fraction: float, refused: bool
) -> None:
    raw = campaign.darks[0].copy()
    hot = np.random.default_rng(8).random(raw.shape) < fraction
    raw[hot] = 65535
    path = tmp_path / "crowded.fits"
    write_raw(path, raw, _header(DARK_S, "MegaraDarkImage", 60))
    if refused:  # light on the detector, a failed readout
        with pytest.raises(InputError, match=r"crowded\.fits.*full scale"):
            inspect_frame(path, Mode.DARK)
    else:  # a detector with many hot pixels: flagged in DQ, not refused
        assert inspect_frame(path, Mode.DARK).checksum == "verified"


def test_pixels_hit_by_cosmic_rays_are_counted_per_amplifier(
    campaign: Campaign, files: Files, tmp_path: Path
) -> None:
    rng = np.random.default_rng(31)
    trimmed = (TRIMMED_SHAPE[0], TRIMMED_SHAPE[1])
    pixels = rng.choice(trimmed[0] * trimmed[1], 3000, replace=False)  # distinct
    frame_of = rng.integers(0, len(campaign.darks), pixels.size)
    rows, cols = np.unravel_index(pixels, trimmed)
    paths = []
    for k, raw in enumerate(campaign.darks):
        hit = frame_of == k
        counts = raw.astype(np.float64)
        for amp in AMPLIFIERS:
            mine = (
                hit & (rows >= amp.trimmed_rows.start) & (rows < amp.trimmed_rows.stop)
            )
            raw_rows = rows[mine] - amp.trimmed_rows.start + amp.data_rows.start
            counts[raw_rows, cols[mine] + DATA_COLUMNS.start] += rng.uniform(
                300.0, 5000.0, int(mine.sum())
            )
        paths.append(tmp_path / f"cr_{k}.fits")
        write_raw(
            paths[-1],
            np.clip(counts, 0, 65535).astype(np.uint16),
            _header(DARK_S, "MegaraDarkImage", 70 + k),
        )
    result = reduce_block(
        block_id="cr",
        mode="MegaraDarkImage",
        frames=paths,
        master_bias=files.master_bias,
        workdir=tmp_path / "work",
    )
    task = json.loads((result.folder / "task.json").read_text())
    found = [a["cosmic_ray_pixels"]["value"] for a in task["qc"]["amplifiers"]]
    expected = [
        int(
            np.count_nonzero(
                (rows >= a.trimmed_rows.start) & (rows < a.trimmed_rows.stop)
            )
        )
        for a in AMPLIFIERS
    ]
    for amp_found, amp_expected in zip(found, expected, strict=True):
        assert amp_expected <= amp_found <= amp_expected + 5  # hot pixels aside
    with fits.open(result.product) as hdul:
        assert [hdul[0].header["NCRPIX1"], hdul[0].header["NCRPIX2"]] == found


def test_a_non_ascii_file_name_in_a_qa_reason_is_written_escaped(
    files: Files, tmp_path: Path
) -> None:
    # An excluded frame's reason names its file; FITS headers hold printable
    # ASCII only. The header gets an escaped copy, task.json the name itself.
    invalid = tmp_path / "dark_\u00edntlk.fits"
    invalid.write_bytes(files.darks[-1].read_bytes())  # INTLKOK = F
    result = reduce_block(
        block_id="x",
        mode="MegaraDarkImage",
        frames=[*files.darks[:-1], invalid],
        master_bias=files.master_bias,
        workdir=tmp_path / "work",
    )
    with fits.open(result.product, checksum=True) as hdul:
        reasons = [v for k, v in hdul[0].header.items() if k.startswith("QAREAS")]
    assert any("dark_\\xedntlk.fits: marked invalid" in r for r in reasons)
    task = json.loads((result.folder / "task.json").read_text(encoding="utf-8"))
    assert any(invalid.name in r for r in task["qa"]["reasons"])
