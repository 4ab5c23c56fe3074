"""Category B: hostile blocks and configurations into ``megara-dark run`` and
``megara-dark reduce``.

Observing blocks (YAML) and the instrument configuration (TOML) go to the
real ``megara-dark run BLOCKS --workdir W [--config C]``; reduction blocks
(YAML) and QC settings (TOML) to ``megara-dark reduce``. The hostile inputs:
a key given twice, integers too large for any field (10**400, 2**63) or out
of range (-1) in every numeric key, NaN and infinity, nesting deep enough to
exhaust the parser's recursion, NUL and non-UTF-8 bytes, a ``master_bias``
that is not a FITS master bias, and input paths that are a FIFO,
``/dev/zero``, a directory, a symbolic-link loop or 5,000 characters long.

Every case must end with exit status 2 and one stderr line naming the file
or key, before any frame is taken: ``W/data`` holds no frame afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.redteam.cases import (
    Case,
    fifos_opened,
    files_under,
    judge,
    long_path,
    run_command,
    run_in_process,
    scratch,
)
from tests.redteam.paths import PLACES, Place, regular

CATEGORY = "B: hostile blocks and configurations"
BIG = {"10**400": 10**400, "2**63": 2**63, "-1": -1}
NONFINITE = {"nan": "nan", "inf": "inf"}
DEEP = 20_000

BIAS = "id: b1\ninstrument: MEGARA\nmode: MegaraBiasImage\nexptime: 0.0\nnframes: 3\n"
DARK = "id: d1\ninstrument: MEGARA\nmode: MegaraDarkImage\nexptime: 10.0\nnframes: 3\n"
REDUCE = "id: d1\ninstrument: MEGARA\nmode: MegaraDarkImage\nframes: [a.fits, b.fits, c.fits]\n"  # fmt: skip


def build_input_world(root: Path) -> Path:
    """Category B needs no shared files: each case writes its own."""
    return root


def _named(path: Path) -> str:
    return str(path) if len(str(path)) < 100 else path.name


# --- one case ------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One hostile input: ``setup(folder)`` writes the files and returns the
    arguments after the command and what stderr must name."""

    name: str
    command: str  # "run" or "reduce"
    setup: Callable[[Path], tuple[list[str], list[str]]]
    words: tuple[str, ...] = ()
    subprocess: bool = False


def _check(root: Path, case: Input) -> list[str]:
    with scratch(root / "cases", "case") as folder:
        args, names = case.setup(folder)
        if "--workdir" in args:
            work = Path(args[args.index("--workdir") + 1])
        else:
            work = folder / "W"
            args += ["--workdir", str(work)]
        argv = [case.command, *args]
        if case.command == "reduce":
            argv += ["--datadir", str(folder)]
        in_subprocess = case.subprocess or case.command == "run"
        outcome = run_command(argv) if in_subprocess else run_in_process(argv)
        problems = judge(outcome, names=names, words=case.words)
        taken = sorted(files_under(work / "data"))
        if taken:
            problems.append(f"frames taken before the refusal: {taken}")
        if case.command == "reduce" and files_under(work):
            problems.append(f"reduce wrote {sorted(files_under(work))} before refusing")
        problems += fifos_opened(folder)
    return problems


def _blocks(text: str | bytes, *names: str, config: str | None = None) -> Input:
    """A ``run`` of the blocks ``text`` (and configuration ``config``)."""
    data = text.encode() if isinstance(text, str) else text

    def setup(folder: Path) -> tuple[list[str], list[str]]:
        blocks = regular(folder, "blocks.yaml", data)
        args = [str(blocks)]
        if config is not None:
            text = config.encode("utf-8", errors="surrogateescape")
            conf = regular(folder, "instrument.toml", text)
            args += ["--config", str(conf)]
        return args, list(names)

    return Input("", "run", setup)


def _named_input(base: Input, name: str, words: tuple[str, ...] = ()) -> Input:
    return Input(name, base.command, base.setup, words, base.subprocess)


def _file_kinds(
    command: str, what: str, content: bytes, option: str | None
) -> list[Input]:
    """The input file itself a FIFO, /dev/zero, a directory, a loop...: the
    command's first argument (``option`` None) or the file of ``option``."""
    blocks = (REDUCE if command == "reduce" else BIAS).encode()
    found = []
    for kind, (place, words) in PLACES.items():

        def setup(folder: Path, place: Place = place) -> tuple[list[str], list[str]]:
            path = place(folder, f"{what}.in", content)
            if option is None:
                return [str(path)], [_named(path)]
            first = regular(folder, "blocks.yaml", blocks)
            return [str(first), option, str(path)], [_named(path)]

        subprocess = kind in ("fifo", "dev-zero")
        name = f"{command}:{what}-is-{kind}"
        found.append(Input(name, command, setup, words, subprocess))
    return found


# --- the tables ----------------------------------------------------------------------


def _deep(prefix: str) -> str:
    return prefix + "[" * DEEP + "]" * DEEP + "\n"


ALIAS_BOMB = "".join(
    [f"a0: &a0 [{', '.join(['x'] * 9)}]\n"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9)]
)


def observing_block_inputs() -> list[Input]:
    """Hostile observing blocks into ``megara-dark run``."""
    cases = [
        (BIAS + "nframes: 400\n", "nframes", ("duplicate",), "dup-nframes"),
        ("id: b0\n" + BIAS, "'id'", ("duplicate",), "dup-id"),
        (DARK + "requirements: {master_bias: a.fits, master_bias: b.fits}\n",
         "master_bias", ("duplicate",), "dup-master-bias"),
        (BIAS.replace("MEGARA", "MEGA\x00RA"), "blocks.yaml", ("NUL", "character"), "nul-byte"),
        (BIAS.replace("b1", "b\udcff1"), "blocks.yaml", ("UTF-8",), "non-utf8-byte"),
        (_deep("nframes: "), "blocks.yaml", ("nested",), "deep-list"),
        ("nframes: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", "blocks.yaml", ("nested",), "deep-map"),
        (ALIAS_BOMB + BIAS.replace("nframes: 3", "nframes: *a8"), "blocks.yaml", (), "alias-bomb"),
        (BIAS.replace("3\n", "1" + "0" * 5000 + "\n"), "blocks.yaml", ("number",), "nframes-5000-digits"),
        ("", "blocks.yaml", ("no observing block",), "empty-file"),
    ]  # fmt: skip
    found = []
    for text, name, words, label in cases:
        data = text.encode("utf-8", errors="surrogateescape")
        found.append(_named_input(_blocks(data, name), f"run:blocks:{label}", words))
    for label, value in {**BIG, **NONFINITE}.items():
        shown = {"nan": ".nan", "inf": ".inf"}.get(str(value), str(value))
        bad_n = BIAS.replace("nframes: 3", f"nframes: {shown}")
        found.append(
            _named_input(_blocks(bad_n, "nframes"), f"run:blocks:nframes={label}")
        )
        bad_t = BIAS + "---\n" + DARK.replace("10.0", shown)
        found.append(
            _named_input(_blocks(bad_t, "exptime"), f"run:blocks:exptime={label}")
        )
    more: dict[str, tuple[Place, tuple[str, ...]]] = {
        "not-fits": (regular, ("not a FITS",)),
        "empty": (regular, ("empty",)),
        "tiny-fits": (regular, ("shape",)),
    }
    for kind, (place, words) in {**PLACES, **more}.items():
        found.append(_master_bias_input(kind, place, words))
    found += _file_kinds("run", "blocks", BIAS.encode(), None)
    found.append(Input("run:workdir-path-5000-characters", "run", _long_workdir,
                       PLACES["path-5000-characters"][1]))  # fmt: skip
    return found


def _long_workdir(folder: Path) -> tuple[list[str], list[str]]:
    blocks = regular(folder, "blocks.yaml", BIAS.encode())
    work = long_path(folder, "W")
    return [str(blocks), "--workdir", str(work)], [work.name]


#: A well-formed FITS file with no image: FITS, but no master bias.
TINY_FITS = b"".join(
    card.ljust(80).encode()
    for card in ("SIMPLE  =                    T", "BITPIX  =                    8",
                 "NAXIS   =                    0", "END")
).ljust(2880)  # fmt: skip
MASTER_CONTENT = {"empty": b"", "tiny-fits": TINY_FITS}


def _master_bias_input(kind: str, place: Place, words: tuple[str, ...]) -> Input:
    content = MASTER_CONTENT.get(kind, b"SIMPLE = not really FITS\n")

    def setup(folder: Path) -> tuple[list[str], list[str]]:
        bias = place(folder, "bias.fits", content)
        text = DARK + f"requirements:\n  master_bias: '{bias}'\n"
        blocks = regular(folder, "blocks.yaml", text.encode())
        return [str(blocks)], ["master_bias", _named(bias)]

    subprocess = kind in ("fifo", "dev-zero")
    return Input(f"run:master_bias-is-{kind}", "run", setup, words, subprocess)


def _numeric_keys() -> list[tuple[str, str, Any]]:
    """(table, key, rule) of every number the instrument TOML holds."""
    from drivers.schema import Number, Pair  # noqa: PLC0415
    from sequencer.config import TABLE_SCHEMAS  # noqa: PLC0415

    return [
        (table, key, rule)
        for table, schema in TABLE_SCHEMAS.items()
        for key, rule in schema.rules.items()
        if isinstance(rule, Number | Pair)
    ]


def _toml(value: object) -> str:
    return {"nan": "nan", "inf": "inf"}.get(str(value), str(value))


def configuration_inputs() -> list[Input]:
    """Hostile instrument configurations into ``megara-dark run``."""
    from drivers.schema import Pair  # noqa: PLC0415
    from sequencer.engineering.limits import FIGURES  # noqa: PLC0415

    found = []
    for table, key, rule in _numeric_keys():
        low = rule.item.low if isinstance(rule, Pair) else rule.low
        for label, value in {**BIG, **NONFINITE}.items():
            if label == "-1" and low <= -1:
                continue
            text = _toml(value)
            shown = f"[{text}, 300.0]" if isinstance(rule, Pair) else text
            conf = f"[{table}]\n{key} = {shown}\n"
            case = _blocks(BIAS, key, config=conf)
            found.append(_named_input(case, f"run:config:{table}.{key}={label}"))
    for figure in FIGURES:
        for bound in ("min", "max"):
            for label in ("10**400", "2**63"):
                conf = (
                    f"[verify.limits]\n{figure} = {{{bound} = {_toml(BIG[label])}}}\n"
                )
                case = _blocks(BIAS, figure, config=conf)
                found.append(
                    _named_input(case, f"run:config:verify.{figure}.{bound}={label}")
                )
    texts = {
        "deep-array": (_deep("[run]\npoll_s = "), ("nested",)),
        "deep-inline-table": ("[run]\npoll_s = " + "{a = " * DEEP + "1" + "}" * DEEP + "\n", ("nested",)),
        "deep-table-header": ("[" + ".".join(["a"] * DEEP) + "]\n", ()),
        "integer-5000-digits": ("[run]\nretake_limit = 1" + "0" * 5000 + "\n", ("integer",)),
        "dup-key": ("[run]\npoll_s = 1.0\npoll_s = 2.0\n", ("TOML",)),
        "nul-byte": ("[run]\npoll_s = 1.0 \x00\n", ("TOML",)),
        "non-utf8-byte": ("[run]\npoll_s = 1.0 # \udcff\n", ("UTF-8",)),
    }  # fmt: skip
    for label, (text, words) in texts.items():
        case = _blocks(BIAS, "instrument.toml", config=text)
        found.append(_named_input(case, f"run:config:{label}", words))
    found += _file_kinds("run", "config", b"[run]\n", "--config")
    for kind, (place, words) in PLACES.items():
        found.append(
            _pointed_input(
                "scenario", "[simulator]\nscenario = '{}'\n", kind, place, words
            )
        )
        found.append(
            _pointed_input(
                "qc_config", "[reduce]\nqc_config = '{}'\n", kind, place, words
            )
        )
    return found


def _pointed_input(
    key: str, template: str, kind: str, place: Place, words: tuple[str, ...]
) -> Input:
    """A configuration whose ``key`` names a hostile file."""

    def setup(folder: Path) -> tuple[list[str], list[str]]:
        target = place(folder, f"{key}.file", b"[qc]\n")
        conf = regular(folder, "instrument.toml", template.format(target).encode())
        blocks = regular(folder, "blocks.yaml", BIAS.encode())
        return [str(blocks), "--config", str(conf)], [key, _named(target)]

    subprocess = kind in ("fifo", "dev-zero")
    return Input(f"run:config:{key}-is-{kind}", "run", setup, words, subprocess)


def _reduce(ob: str | bytes, *names: str, qc: str | None = None) -> Input:
    data = ob.encode("utf-8", errors="surrogateescape") if isinstance(ob, str) else ob

    def setup(folder: Path) -> tuple[list[str], list[str]]:
        args = [str(regular(folder, "ob.yaml", data))]
        if qc is not None:
            path = regular(folder, "qc.toml", qc.encode("utf-8", "surrogateescape"))
            args += ["--qc-config", str(path)]
        return args, list(names)

    return Input("", "reduce", setup)


def reduction_inputs() -> list[Input]:
    """Hostile reduction blocks and QC settings into ``megara-dark reduce``."""
    from reduce.checks import FrameCheckConfig  # noqa: PLC0415
    from reduce.qalimits import QALimit, QCThresholds  # noqa: PLC0415

    obs = {
        "dup-frames": (REDUCE + "frames: [x.fits]\n", "frames", ("duplicate",)),
        "dup-id": ("id: d0\n" + REDUCE, "'id'", ("duplicate",)),
        "dup-master-bias": (REDUCE + "requirements: {master_bias: a, master_bias: b}\n", "master_bias", ("duplicate",)),
        "nul-byte": (REDUCE.replace("MEGARA", "MEGA\x00RA"), "ob.yaml", ("character",)),
        "non-utf8-byte": (REDUCE.replace("d1", "d\udcff1"), "ob.yaml", ("UTF-8",)),
        "deep-list": (_deep("frames: "), "ob.yaml", ("nested",)),
        "deep-map": ("frames: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n", "ob.yaml", ("nested",)),
        "alias-bomb": (ALIAS_BOMB + REDUCE.replace("frames: [a.fits, b.fits, c.fits]", "frames: *a8"), "ob.yaml", ()),
        "id-5000-digits": (REDUCE.replace("d1", "1" + "0" * 5000), "ob.yaml", ()),
        "empty-file": ("", "ob.yaml", ("no reduction block",)),
    }  # fmt: skip
    found = [
        _named_input(_reduce(text, name), f"reduce:blocks:{label}", words)
        for label, (text, name, words) in obs.items()
    ]
    keys: list[tuple[str, str, str]] = []
    for section, cls in (("qc", QCThresholds), ("checks", FrameCheckConfig)):
        for field, default in vars(cls()).items():
            bounds = ("warn", "bad") if isinstance(default, QALimit) else ("",)
            keys += [(section, field, bound) for bound in bounds]
    for section, field, bound in keys:
        for label, value in {**BIG, **NONFINITE}.items():
            given = f"{{ {bound} = {_toml(value)} }}" if bound else _toml(value)
            qc = f"[{section}]\n{field} = {given}\n"
            case = _reduce(REDUCE, field, "qc.toml", qc=qc)
            key = f"{section}.{field}{'.' + bound if bound else ''}"
            found.append(_named_input(case, f"reduce:qc:{key}={label}"))
    texts = {
        "deep-array": _deep("[qc]\nhot_nsigma = "),
        "integer-5000-digits": "[qc]\nhot_nsigma = 1" + "0" * 5000 + "\n",
        "dup-key": "[qc]\nhot_nsigma = 1.0\nhot_nsigma = 2.0\n",
        "nul-byte": "[qc]\nhot_nsigma = 1.0 \x00\n",
        "non-utf8-byte": "[qc]\nhot_nsigma = 1.0 # \udcff\n",
    }
    for label, text in texts.items():
        found.append(
            _named_input(_reduce(REDUCE, "qc.toml", qc=text), f"reduce:qc:{label}")
        )
    found += _file_kinds("reduce", "blocks", REDUCE.encode(), None)
    found += _file_kinds("reduce", "qc", b"[qc]\n", "--qc-config")
    return found


#: Cases known to fail, with where the fix belongs. The tests expect them to
#: fail (strict xfail): once fixed, remove them from here.
KNOWN: dict[str, str] = {}


def input_cases() -> list[Case]:
    """Every category-B case."""
    inputs = observing_block_inputs() + configuration_inputs() + reduction_inputs()
    assert len({i.name for i in inputs}) == len(inputs), "case names must be unique"
    return [
        Case(CATEGORY, i.name, lambda root, i=i: _check(root, i), KNOWN.get(i.name, ""))
        for i in inputs
    ]
