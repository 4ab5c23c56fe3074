"""Read the literal example exchanges out of ``docs/protocols.md``.

An exchange is a fenced block whose info string is ``exchange <device>``::

    ```exchange cover
    -> b'>S000\\n'
    <- b'*S98002\\n'
    ```

``->`` lines are bytes the host sends, ``<-`` lines bytes the device sends,
each written as a Python bytes literal. Tests replay them against the codecs,
so the codec cannot drift from the document.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocols.md"

_BLOCK_RE = re.compile(
    r"^```exchange (?P<device>\w+)[^\n]*\n(?P<body>.*?)^```", re.M | re.S
)


@dataclass(frozen=True)
class Exchange:
    device: str
    line: int  # line number of the block in the document, for messages
    steps: tuple[tuple[str, bytes], ...]  # ("->" host to device | "<-", bytes)


def exchanges(device: str, doc: Path = DOC) -> list[Exchange]:
    """All example exchanges for ``device`` in the protocol document."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK_RE.finditer(text):
        if match["device"] != device:
            continue
        line = text.count("\n", 0, match.start()) + 1
        steps = []
        for text_line in match["body"].splitlines():
            raw = text_line.strip()
            if not raw:
                continue
            direction, _, literal = raw.partition(" ")
            if direction not in ("->", "<-"):
                raise ValueError(f"{doc.name}:{line}: bad exchange line {raw!r}")
            value = ast.literal_eval(literal)
            if not isinstance(value, bytes):
                raise ValueError(f"{doc.name}:{line}: not a bytes literal: {raw!r}")
            steps.append((direction, value))
        found.append(Exchange(device, line, tuple(steps)))
    return found
