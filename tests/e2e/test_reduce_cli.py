"""``megara-dark reduce`` end to end on seeded synthetic raw frames.

The happy path runs the installed command as a subprocess (``megara-dark
reduce`` once the group carries it, else ``python -m reduce``, the same click
command); the bad-input cases run the click command in-process with
CliRunner, which checks the same exit status and stderr line.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from astropy.io import fits
from click.testing import CliRunner
from pytest_mock import MockerFixture

import reduce.batch
import reduce.preflight
from reduce.cli import reduce_command
from reduce.geometry import AMPLIFIERS, DATA_COLUMNS
from reduce.synthetic import SyntheticDetector, make_raw, raw_header, write_raw

pytestmark = pytest.mark.e2e

DARK_S = 3600.0
N_BIAS, N_DARK = 3, 3


def frame_header(exptime: float, obsmode: str, k: int) -> dict[str, Any]:
    header = raw_header(exptime, obsmode=obsmode)
    header.update(
        {
            "DATE-OBS": "2026-11-28T01:00:00.0",
            "INSCONF": "4fd05b24-2ed9-457b-b563-a3c618bb1d4c",
            "VPH": "LR-U",
            "INSMODE": "MOS",
            "UUID": str(uuid.UUID(int=k + (1 << 64))),
        }
    )
    return header


@dataclass(frozen=True)
class RawSet:
    folder: Path
    truth: SyntheticDetector
    dark: npt.NDArray[np.uint16]  # one more dark, for mutated copies
    bias: npt.NDArray[np.uint16]


@pytest.fixture(scope="module")
def raws(tmp_path_factory: pytest.TempPathFactory) -> RawSet:
    folder = tmp_path_factory.mktemp("raw")
    truth = SyntheticDetector()
    rng = np.random.default_rng(20261128)
    for k in range(N_BIAS):
        header = frame_header(0.0, "MegaraBiasImage", k)
        write_raw(folder / f"bias_{k}.fits", make_raw(truth, 0.0, rng), header)
    for k in range(N_DARK):
        header = frame_header(DARK_S, "MegaraDarkImage", 100 + k)
        write_raw(folder / f"dark_{k}.fits", make_raw(truth, DARK_S, rng), header)
    return RawSet(folder, truth, make_raw(truth, DARK_S, rng), make_raw(truth, 0, rng))


def block(bid: str, mode: str, frames: list[str], **extra: Any) -> dict[str, Any]:
    return {"id": bid, "instrument": "MEGARA", "mode": mode, "frames": frames, **extra}


BIAS_BLOCK = block("b1", "MegaraBiasImage", [f"bias_{k}.fits" for k in range(N_BIAS)])
DARK_BLOCK = block("d1", "MegaraDarkImage", [f"dark_{k}.fits" for k in range(N_DARK)])


def write_blocks(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return path


def command() -> list[str]:
    beside = Path(sys.executable).with_name("megara-dark")
    if beside.exists():
        probe = subprocess.run(
            [str(beside), "reduce", "--help"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return [str(beside), "reduce"]
    return [sys.executable, "-m", "reduce"]


@pytest.fixture(scope="module")
def reduced(raws: RawSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("work")
    ob = write_blocks(work / "ob.yaml", BIAS_BLOCK, DARK_BLOCK)
    done = subprocess.run(
        [*command(), str(ob), "--datadir", str(raws.folder), "--workdir", str(work)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "b1: 3 frames" in done.stdout
    assert "d1: 3 frames" in done.stdout
    return work


def open_verified(path: Path) -> fits.HDUList:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum mismatch
        hdul = fits.open(path, checksum=True, memmap=False)
    for hdu in hdul:
        assert "CHECKSUM" in hdu.header, hdu.name
        assert "DATASUM" in hdu.header, hdu.name
    return hdul


@pytest.mark.parametrize(("obsid", "product"), [("b1", "bias"), ("d1", "dark")])
def test_every_product_exists_and_validates(
    reduced: Path, obsid: str, product: str
) -> None:
    folder = reduced / f"obsid{obsid}_results"
    result = json.loads((folder / "result.json").read_text())
    assert result["values"] == {f"master_{product}": f"master_{product}.fits"}
    # A clean synthetic set (reduce.synthetic, 10-12 e-/pix/h, under the
    # 15 e-/pix/h warn limit of the expected 5): nothing to say.
    assert result["qc"] == "GOOD", result["qc_reasons"]
    uuid.UUID(result["uuid"])
    task = json.loads((folder / "task.json").read_text())
    for key in ("inputs", "parameters", "qc", "qa", "software", "timings_s"):
        assert key in task
    frames = task["inputs"]["frames"]
    assert len(frames) == 3
    # hashed ahead on a thread (reduce.digests): still each file's own digest
    for f in frames:
        expected = hashlib.sha256(Path(f["file"]).read_bytes()).hexdigest()
        assert f["sha256"] == expected
    assert all(f["checksum"] == "verified" for f in frames)
    assert task["qa"]["flag"] == result["qc"]
    assert task["qc"]["amplifiers"][0]["read_noise"]["unit"] == "e-"
    log_text = (folder / "processing.log").read_text()
    assert "combined 3 frames" in log_text
    with open_verified(folder / f"master_{product}.fits") as hdul:
        header = hdul[0].header
        assert hdul[0].data.dtype.newbyteorder("=") == np.float32
        assert hdul["VARIANCE"].data.dtype.newbyteorder("=") == np.float32
        assert hdul["MAP"].data.dtype.newbyteorder("=") == np.int16
        assert np.all(hdul["MAP"].data == 3)
        assert header["IMAGETYP"] == f"MASTER_{product.upper()}"
        assert header["NUM-NCOM"] == 3
        assert header["QAFLAG"] == result["qc"]
        assert header["BUNIT"] == "ADU"
        # DATE is the product's own (a raw frame's would be the night's)
        written = datetime.fromisoformat(header["DATE"]).replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - written) < timedelta(hours=6)
        if "NCRPIX1" in header:
            assert "rejected" not in header.comments["NCRPIX1"]
        uuid.UUID(header["UUID"])


def test_dark_uses_the_bias_of_the_same_file(reduced: Path) -> None:
    with fits.open(reduced / "obsidb1_results" / "master_bias.fits") as bias:
        bias_uuid = bias[0].header["UUID"]
    with fits.open(reduced / "obsidd1_results" / "master_dark.fits") as dark:
        assert dark[0].header["NUM-BS"] == bias_uuid
        assert dark[0].header["NUMTYPE"] == "MasterDark"


def test_dark_current_recovered_from_darkrate(reduced: Path, raws: RawSet) -> None:
    with open_verified(reduced / "obsidd1_results" / "master_dark.fits") as hdul:
        rate = hdul["DARKRATE"].data
        dq = hdul["DQ"].data
        primary = hdul[0].data
        darktime = hdul["DARKRATE"].header["DARKTIME"]
        bits = {row["NAME"]: row["BIT"] for row in hdul["DQBITS"].data}
        assert hdul["DARKRATE"].header["BUNIT"] == "electron/s"
    assert bits["HOT_PIXEL"] == 1
    assert bits["HOT_COLUMN"] == 2
    for amp, truth in zip(AMPLIFIERS, raws.truth.dark_e_per_h, strict=True):
        rows = amp.trimmed_rows
        good = dq[rows] == 0
        measured = float(np.mean(rate[rows][good])) * 3600.0
        assert measured == pytest.approx(truth, rel=0.02)
        # Units round trip: rate x DARKTIME = dark signal (e-) = PRIMARY x gain.
        assert np.allclose(
            rate[rows] * darktime, primary[rows] * amp.gain, rtol=1e-5, atol=1e-3
        )
    assert np.count_nonzero(dq & 1) >= 0.9 * np.count_nonzero(raws.truth.hot_mask)


# --- bad inputs: one line on stderr, the right exit status ------------------


def run_cli(ob: Path, datadir: Path, work: Path, *extra: str) -> Any:
    runner = CliRunner()
    args = [str(ob), "--datadir", str(datadir), "--workdir", str(work), *extra]
    return runner.invoke(reduce_command, args)


def one_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def raw_copy(
    raws: RawSet,
    folder: Path,
    name: str,
    *,
    counts: npt.NDArray[np.uint16] | None = None,
    obsmode: str = "MegaraDarkImage",
    exptime: float = DARK_S,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    header = frame_header(exptime, obsmode, 500)
    if edit is not None:
        edit(header)
    write_raw(folder / name, raws.dark if counts is None else counts, header)
    return name


def link_darks(raws: RawSet, folder: Path) -> list[str]:
    names = []
    for k in range(N_DARK):
        (folder / f"dark_{k}.fits").symlink_to(raws.folder / f"dark_{k}.fits")
        names.append(f"dark_{k}.fits")
    return names


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    ob = tmp_path / "ob.yaml"
    ob.write_text("id: [unclosed\n")
    result = run_cli(ob, tmp_path, tmp_path)
    assert result.exit_code == 2
    assert "ob.yaml" in one_line(result)
    assert "YAML" in one_line(result)


def test_block_missing_key_names_block_and_key(tmp_path: Path) -> None:
    ob = write_blocks(tmp_path / "ob.yaml", {"id": "x", "instrument": "MEGARA"})
    result = run_cli(ob, tmp_path, tmp_path)
    assert result.exit_code == 2
    assert "'mode'" in one_line(result)
    assert "block x" in one_line(result)


def test_missing_frame_file(raws: RawSet, tmp_path: Path) -> None:
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", ["no.fits"]))
    result = run_cli(ob, raws.folder, tmp_path)
    assert result.exit_code == 2
    assert "no.fits" in one_line(result)
    assert "not found" in one_line(result)


def _tiny(path: Path) -> None:
    fits.PrimaryHDU(np.zeros((100, 100), np.int16)).writeto(path)


def _in_extension(path: Path) -> None:
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4212, 4196), np.uint16))]
    ).writeto(path)


def _float_nan(path: Path) -> None:
    data = np.full((4212, 4196), np.nan, np.float32)
    fits.PrimaryHDU(
        data, header=fits.Header(frame_header(DARK_S, "MegaraDarkImage", 1))
    ).writeto(path)


@pytest.mark.parametrize(
    ("maker", "expected"),
    [(_tiny, "shape"), (_in_extension, "NAXIS=0"), (_float_nan, "BITPIX=-32")],
)
def test_wrong_layout_is_input_error(
    tmp_path: Path, maker: Callable[[Path], None], expected: str
) -> None:
    maker(tmp_path / "odd.fits")
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", ["odd.fits"]))
    result = run_cli(ob, tmp_path, tmp_path, "--min-frames", "1")
    assert result.exit_code == 2
    assert "odd.fits" in one_line(result)
    assert expected in one_line(result)


def test_bias_frame_in_dark_block(raws: RawSet, tmp_path: Path) -> None:
    name = raw_copy(
        raws, tmp_path, "b.fits", counts=raws.bias, obsmode="MegaraBiasImage", exptime=0
    )
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", [name]))
    result = run_cli(ob, tmp_path, tmp_path, "--min-frames", "1")
    assert result.exit_code == 2
    assert "b.fits" in one_line(result)
    assert "OBSMODE" in one_line(result)


def test_missing_keyword(raws: RawSet, tmp_path: Path) -> None:
    name = raw_copy(raws, tmp_path, "k.fits", edit=lambda h: h.pop("EXPTIME"))
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", [name]))
    result = run_cli(ob, tmp_path, tmp_path, "--min-frames", "1")
    assert result.exit_code == 2
    assert "k.fits" in one_line(result)
    assert "EXPTIME" in one_line(result)


def test_saturated_garbage(raws: RawSet, tmp_path: Path) -> None:
    counts = np.full_like(raws.dark, 65535)
    name = raw_copy(raws, tmp_path, "sat.fits", counts=counts)
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", [name]))
    result = run_cli(ob, tmp_path, tmp_path, "--min-frames", "1")
    assert result.exit_code == 2
    assert "sat.fits" in one_line(result)
    assert "full scale" in one_line(result)


def test_truncated_file(raws: RawSet, tmp_path: Path) -> None:
    name = raw_copy(raws, tmp_path, "t.fits")
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", [name]))
    result = run_cli(ob, tmp_path, tmp_path, "--min-frames", "1")
    assert result.exit_code == 2
    assert "t.fits" in one_line(result)
    assert "truncated" in one_line(result)


def test_checksum_mismatch(raws: RawSet, tmp_path: Path) -> None:
    name = raw_copy(raws, tmp_path, "c.fits")
    with open(tmp_path / name, "r+b") as handle:
        handle.seek(-100_000, 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", [name]))
    result = run_cli(ob, tmp_path, tmp_path, "--min-frames", "1")
    assert result.exit_code == 2
    assert "c.fits" in one_line(result)
    assert "DATASUM mismatch" in one_line(result)


def test_mixed_exposure_times(raws: RawSet, tmp_path: Path) -> None:
    names = link_darks(raws, tmp_path)
    names.append(raw_copy(raws, tmp_path, "short.fits", exptime=600.0))
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", names))
    result = run_cli(ob, tmp_path, tmp_path)
    assert result.exit_code == 2
    assert "short.fits (600 s)" in one_line(result)


def test_simulated_and_real_not_mixed(raws: RawSet, tmp_path: Path) -> None:
    names = link_darks(raws, tmp_path)
    names.append(
        raw_copy(raws, tmp_path, "sim.fits", edit=lambda h: h.update(SIMULATE=True))
    )
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", names))
    result = run_cli(ob, tmp_path, tmp_path)
    assert result.exit_code == 2
    assert "sim.fits" in one_line(result)
    assert "simulated" in one_line(result)


def test_too_few_frames(raws: RawSet, tmp_path: Path) -> None:
    ob = write_blocks(
        tmp_path / "ob.yaml", block("d", "MegaraDarkImage", ["dark_0.fits"])
    )
    result = run_cli(ob, raws.folder, tmp_path)
    assert result.exit_code == 2
    assert "block d" in one_line(result)
    assert "fewer than the minimum 3" in one_line(result)


def test_bad_qc_config_names_key(raws: RawSet, tmp_path: Path) -> None:
    config = tmp_path / "qc.toml"
    config.write_text("[qc]\nhot_sigma = 3\n")
    ob = write_blocks(tmp_path / "ob.yaml", DARK_BLOCK)
    result = run_cli(ob, raws.folder, tmp_path, "--qc-config", str(config))
    assert result.exit_code == 2
    assert "qc.toml" in one_line(result)
    assert "hot_sigma" in one_line(result)


# --- exclusions: reported, not errors ----------------------------------------


def test_interlock_and_light_leak_frames_are_excluded(
    raws: RawSet, reduced: Path, tmp_path: Path
) -> None:
    names = link_darks(raws, tmp_path)
    invalid = raw_copy(
        raws,
        tmp_path,
        "open.fits",
        edit=lambda h: h.update(INTLKOK=False, INTLKWHY="cover left Open"),
    )
    leaky = raws.dark.copy()
    for amp in AMPLIFIERS:
        leaky[amp.data_rows, DATA_COLUMNS] += np.uint16(40)  # ~65 e- in 1 h
    leak = raw_copy(raws, tmp_path, "leak.fits", counts=leaky)
    bias = reduced / "obsidb1_results" / "master_bias.fits"
    doc = block("d", "MegaraDarkImage", [*names, invalid, leak])
    doc["requirements"] = {"master_bias": str(bias)}
    ob = write_blocks(tmp_path / "ob.yaml", doc)
    result = run_cli(ob, tmp_path, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "3 frames, 2 excluded; QA PARTIAL" in result.stdout
    task = json.loads((tmp_path / "obsidd_results" / "task.json").read_text())
    why = {e["file"]: e["why"] for e in task["excluded"]}
    assert why == {"open.fits": "interlock", "leak.fits": "light_leak"}
    assert any("cover left Open" in r for r in task["qa"]["reasons"])
    # result.json says it too, for whoever reads only numina's result file.
    outcome = json.loads((tmp_path / "obsidd_results" / "result.json").read_text())
    assert {e["file"] for e in outcome["excluded"]} == {"open.fits", "leak.fits"}
    assert all(e["reason"] for e in outcome["excluded"])
    assert outcome["qc_reasons"] == task["qa"]["reasons"]
    used = {f["file"].rsplit("/", 1)[-1]: f["used"] for f in task["inputs"]["frames"]}
    assert used["open.fits"] is False
    assert used["dark_0.fits"] is True
    with fits.open(tmp_path / "obsidd_results" / "master_dark.fits") as hdul:
        assert hdul[0].header["NEXCLUDE"] == 2
        assert hdul[0].header["QAFLAG"] == "PARTIAL"
        assert np.all(hdul["MAP"].data == 3)


def test_the_reduction_never_imports_astropy(raws: RawSet, tmp_path: Path) -> None:
    # Importing astropy.io.fits costs ~0.2 s of CPU; the reduction reads and
    # writes its headers itself (reduce.fits.cards). A bias and a dark block,
    # the dark reading the master bias back, in a fresh interpreter.
    ob = write_blocks(tmp_path / "ob.yaml", BIAS_BLOCK, DARK_BLOCK)
    script = (
        "import sys\n"
        "from sequencer.cli import main\n"
        "sys.argv = ['megara-dark', 'reduce', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'astropy'))\n"
    )
    args = [str(ob), "--datadir", str(raws.folder), "--workdir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "d1: 3 frames" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_existing_products_are_kept_unless_overwrite(
    raws: RawSet, reduced: Path, tmp_path: Path
) -> None:
    ob = reduced / "ob.yaml"
    product = reduced / "obsidb1_results" / "master_bias.fits"
    before = product.read_bytes()
    result = run_cli(ob, raws.folder, reduced)
    assert result.exit_code == 2
    assert "already holds products" in one_line(result)
    assert "--overwrite" in one_line(result)
    assert product.read_bytes() == before
    again = run_cli(ob, raws.folder, reduced, "--overwrite")
    assert again.exit_code == 0, one_line(again)


def test_every_block_is_checked_before_any_product(
    raws: RawSet, tmp_path: Path
) -> None:
    """A bad second block refuses the file: the first block makes nothing."""
    bad = block("d2", "MegaraDarkImage", ["dark_0.fits", "dark_1.fits"])
    ob = write_blocks(tmp_path / "ob.yaml", BIAS_BLOCK, bad)
    result = run_cli(ob, raws.folder, tmp_path)
    assert result.exit_code == 2
    assert "d2" in one_line(result)
    assert "fewer than the minimum 3" in one_line(result)
    assert not (tmp_path / "obsidb1_results").exists()


def test_one_frame_under_three_spellings_is_refused(
    raws: RawSet, tmp_path: Path
) -> None:
    names = ["dark_0.fits", "./dark_0.fits", str(raws.folder / "dark_0.fits")]
    ob = write_blocks(tmp_path / "ob.yaml", block("d", "MegaraDarkImage", names))
    result = run_cli(ob, raws.folder, tmp_path)
    assert result.exit_code == 2
    assert "same file" in one_line(result)
    assert not (tmp_path / "obsidd_results").exists()


def test_a_master_bias_is_read_once(
    raws: RawSet, reduced: Path, tmp_path: Path, mocker: MockerFixture
) -> None:
    """The preflight's reading of the named master bias is the one used."""
    named = reduced / "obsidb1_results" / "master_bias.fits"
    ob = write_blocks(
        tmp_path / "ob.yaml",
        {**DARK_BLOCK, "requirements": {"master_bias": str(named)}},
    )
    in_preflight = mocker.spy(reduce.preflight, "load_master")
    in_batch = mocker.spy(reduce.batch, "load_master")
    result = run_cli(ob, raws.folder, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert in_preflight.call_count + in_batch.call_count == 1


def test_a_master_bias_replaced_by_an_earlier_block_is_read_again(
    raws: RawSet, tmp_path: Path
) -> None:
    """The dark block names the bias block's product, which exists from an
    earlier run: with --overwrite the bias block replaces it, and the dark
    uses the new one, not the copy the preflight read."""
    named = "obsidb1_results/master_bias.fits"
    dark = {**DARK_BLOCK, "requirements": {"master_bias": named}}
    ob = write_blocks(tmp_path / "ob.yaml", BIAS_BLOCK, dark)
    first = run_cli(ob, raws.folder, tmp_path)
    assert first.exit_code == 0, first.stderr
    second = run_cli(ob, raws.folder, tmp_path, "--overwrite")
    assert second.exit_code == 0, second.stderr
    with fits.open(tmp_path / named) as bias:
        bias_uuid = bias[0].header["UUID"]
    with fits.open(tmp_path / "obsidd1_results" / "master_dark.fits") as product:
        assert product[0].header["NUM-BS"] == bias_uuid
