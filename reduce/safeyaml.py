"""Reading the reduction's YAML: a regular file, parsed with unique keys.

``reduce`` imports nothing of the other packages (it runs alone on archived
frames), so this is its own copy of what ``drivers.safeyaml`` does for the
sequencer: the file is read by :func:`reduce.files.read_text` (a regular
file of bounded size: a named pipe or a device is refused, never opened),
and a key given twice in one mapping is refused instead of the last value
silently winning (PyYAML's ``safe_load`` keeps the last one).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from yaml import YAMLError
from yaml.constructor import ConstructorError
from yaml.loader import SafeLoader
from yaml.nodes import MappingNode, Node

from reduce.errors import InputError
from reduce.files import read_text

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


def _problem(err: YAMLError) -> str:
    character = getattr(err, "character", None)  # PyYAML's ReaderError
    if isinstance(character, int):
        return (
            f"character {chr(character)!r} at position {getattr(err, 'position', '?')}"
            ": a YAML text holds no NUL or other control character"
        )
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
    text = read_text(path, "reduction blocks file", MAX_YAML_BYTES)
    docs: list[Any] = []
    loader: UniqueKeyLoader | None = None
    try:
        # The reader refuses NUL and other control characters at once.
        loader = UniqueKeyLoader(text)
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
        if loader is not None:
            loader.dispose()
    return docs
