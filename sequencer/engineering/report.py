"""Self-contained HTML pages for the engineering reports.

Every page is one file: the style sheet is inline and every image is a
``data:image/png;base64`` URI, so the page opens from ``file://`` (or an
e-mail attachment) with no server and no network. Elements that tests and
scripts look for carry ``data-*`` attributes (``data-plot``, ``data-figure``,
``data-status``, ``data-run``). Files are written atomically.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from reduce import io

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
.pass { background: #e8f5e9; } .fail { background: #ffebee; }
.unmeasured, .unchecked { background: #fffde7; }
.verdict { font-size: 1.4em; font-weight: bold; padding: 0.4em 0.8em;
           display: inline-block; border-radius: 4px; }
.verdict.pass { color: #1b5e20; } .verdict.fail { color: #b71c1c; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
"""


def esc(value: object) -> str:
    """HTML-escaped text of ``value``."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 4) -> str:
    """A number for a table (``-`` when not measured)."""
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.{digits}g}"


def image(png: bytes, key: str, caption: str) -> str:
    """A ``<figure>`` with the PNG inline as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img data-plot="{esc(key)}" alt="{esc(caption)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{esc(caption)}'
        "</figcaption></figure>"
    )


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    row_attrs: Iterable[dict[str, str]] | None = None,
) -> str:
    """An HTML table; ``row_attrs`` gives attributes (``class``, ``data-*``) per row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    attrs = iter(row_attrs) if row_attrs is not None else None
    lines = []
    for row in rows:
        extra = next(attrs) if attrs is not None else {}
        attr = "".join(f' {esc(k)}="{esc(v)}"' for k, v in extra.items())
        cells = "".join(f"<td>{esc(c)}</td>" for c in row)
        lines.append(f"<tr{attr}>{cells}</tr>")
    return (
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"
    )


def page(title: str, parts: Iterable[str]) -> str:
    """A whole HTML document around ``parts`` (already HTML)."""
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n<h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`reduce.io.write_atomic`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, its folder made if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_atomic(path, lambda handle: handle.write(data))
    return path


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` as indented JSON, atomically (NaN refused)."""
    return write_atomic(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
