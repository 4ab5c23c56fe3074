"""Observing blocks: valid files parse, every invalid one is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.errors import ConfigError
from sequencer.blocks import Mode, load_blocks, parse_blocks

BIAS = "id: b1\ninstrument: MEGARA\nmode: MegaraBiasImage\nexptime: 0\nnframes: 5\n"
DARK = "id: d1\ninstrument: MEGARA\nmode: MegaraDarkImage\nexptime: 900.0\nnframes: 3\n"


def parse(text: str, base: Path = Path()) -> list:
    return parse_blocks(text, source="ob.yaml", base=base)


def test_bias_then_dark_uses_the_bias_product() -> None:
    blocks = parse(BIAS + "---\n" + DARK)
    assert [b.mode for b in blocks] == [Mode.BIAS, Mode.DARK]
    assert blocks[1].bias_from == "b1"
    assert blocks[1].exptime == 900.0
    assert blocks[1].nframes == 3


def test_dark_with_master_bias_file(tmp_path: Path) -> None:
    (tmp_path / "mb.fits").write_bytes(b"x")
    text = DARK + "requirements:\n  master_bias: mb.fits\n"
    (block,) = parse(text, base=tmp_path)
    assert block.master_bias == (tmp_path / "mb.fits").resolve()
    assert block.bias_from is None


def test_load_blocks_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ob.yaml"
    path.write_text(BIAS)
    assert load_blocks(path)[0].id == "b1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DARK, "needs a master bias"),
        (BIAS.replace("MegaraBiasImage", "MegaraFlat"), "key 'mode': got 'MegaraFlat'"),
        (BIAS + "colour: red\n", "unknown key(s) 'colour'"),
        (BIAS.replace("nframes: 5", "nframes: 0"), "key 'nframes': got 0"),
        (BIAS.replace("nframes: 5", "nframes: 2.5"), "expected an integer"),
        (BIAS.replace("exptime: 0", "exptime: 5"), "must have exptime 0"),
        (BIAS + "---\n" + DARK.replace("900.0", "-1"), "key 'exptime': got -1"),
        (BIAS + "---\n" + DARK.replace("900.0", ".nan"), "key 'exptime'"),
        (BIAS + "---\n" + DARK.replace("900.0", "1.0e+9"), "<= 10485.75"),
        (BIAS + "---\n" + DARK.replace("900.0", "1e3"), "write it with a dot"),
        (BIAS + "---\n" + DARK.replace("900.0", "'long'"), "expected a number"),
        (BIAS.replace("MEGARA", "EMIR"), "key 'instrument'"),
        (BIAS.replace("id: b1", "id: 'a b'"), "key 'id'"),
        (BIAS + "---\n" + BIAS, "used twice"),
        (BIAS.replace("nframes: 5\n", ""), "missing key(s) 'nframes'"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("", "holds no observing block"),
        ("id: [", "not valid YAML"),
        (DARK + "requirements:\n  master_bias: nowhere.fits\n", "does not exist"),
        (DARK + "requirements:\n  flat: x\n", "unknown requirement(s) 'flat'"),
        (BIAS + "requirements:\n  master_bias: x\n", "a bias block needs none"),
    ],
)
def test_invalid_blocks_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert message in str(info.value)
    assert str(info.value).startswith("ob.yaml")


def test_error_names_the_document() -> None:
    with pytest.raises(ConfigError, match=r"document 2 \(id 'd1'\)"):
        parse(BIAS + "---\n" + DARK.replace("nframes: 3", "nframes: -1"))


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_blocks(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not a UTF-8"):
        load_blocks(binary)
