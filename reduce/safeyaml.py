"""Reading the reduction's YAML: a regular file, parsed with unique keys.

``reduce`` imports nothing of the other packages (it runs alone on archived
frames), so this is its own copy of what ``drivers.files`` and
``drivers.safeyaml`` do for the sequencer: the file is opened without
blocking and must be a regular file (a named pipe would hang the read), and
a key given twice in one mapping is refused instead of the last value
silently winning (PyYAML's ``safe_load`` keeps the last one).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from yaml import YAMLError
from yaml.constructor import ConstructorError
from yaml.loader import SafeLoader
from yaml.nodes import MappingNode, Node

from reduce.errors import InputError

log = logging.getLogger(__name__)

#: Largest YAML file read (bytes); a reduction file lists a few hundred frames.
MAX_YAML_BYTES = 4 * 1024 * 1024
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ConstructorError):
    """A mapping holds the same key twice."""


class UniqueKeyLoader(SafeLoader):
    """PyYAML's safe loader, except that a key may appear once per mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            first: dict[Hashable, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first.setdefault(key, key_node)
                except TypeError:  # unhashable: the base class says so
                    continue
                if earlier is not key_node:
                    raise DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key {str(key)[:60]!r} (also on line "
                        f"{earlier.start_mark.line + 1}); give each key once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def _read(path: Path, source: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise InputError(source, f"cannot read: {err.strerror}") from None
    except ValueError:  # a NUL in the name
        raise InputError(source, "cannot read: a file name holds no NUL") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(
                source, "not a regular file (a folder, pipe or device); give a file"
            )
        if info.st_size > MAX_YAML_BYTES:
            raise InputError(source, f"larger than {MAX_YAML_BYTES} bytes")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_YAML_BYTES:  # it grew while read
                raise InputError(source, f"larger than {MAX_YAML_BYTES} bytes")
    except OSError as err:
        raise InputError(source, f"cannot read: {err.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(source, f"not a UTF-8 text file ({err.reason})") from None


def _problem(err: YAMLError) -> str:
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_yaml_file(path: str | Path) -> list[Any]:
    """Every YAML document of the file ``path`` (None for an empty one).

    Raises
    ------
    InputError
        One line: the file cannot be read, is not a regular UTF-8 text file,
        or is not valid YAML (syntax, a key given twice, nesting too deep,
        an integer too long).
    """
    source = str(path)
    loader = UniqueKeyLoader(_read(Path(path), source))
    docs: list[Any] = []
    try:
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
    except YAMLError as err:
        where = f"not valid YAML (document {len(docs) + 1}, {_problem(err)})"
        raise InputError(source, where) from None
    except RecursionError:
        raise InputError(
            source, "YAML nested too deeply to read; a block is a flat mapping"
        ) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise InputError(source, f"not valid YAML: {err}") from None
    finally:
        loader.dispose()
    return docs
