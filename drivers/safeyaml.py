"""The one YAML loader of the suite (outside ``reduce``, which has its own).

PyYAML's ``safe_load`` builds only plain data, but it accepts a key given
twice in one mapping and keeps the last value: ``nframes: 5`` then
``nframes: 400`` reads as 400, and a typo no one sees takes 80 frames too
many. :class:`UniqueKeyLoader` refuses that, naming the key and both lines.
Every reader of observing blocks, fault scenarios and campaigns goes through
:func:`load_yaml` or :func:`load_yaml_documents`, which also turn every way
a text can fail to parse (syntax, nesting too deep for the parser, integers
too long for Python) into one :class:`ConfigError` line.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from yaml import YAMLError
from yaml.constructor import ConstructorError
from yaml.loader import SafeLoader
from yaml.nodes import MappingNode, Node

from drivers.errors import ConfigError, one_line_yaml_error, shown

log = logging.getLogger(__name__)

_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ConstructorError):
    """A mapping holds the same key twice."""


class UniqueKeyLoader(SafeLoader):
    """PyYAML's safe loader, except that a key may appear once per mapping.

    Keys merged in with ``<<: *anchor`` may still be overridden: only the
    keys written in the mapping itself are compared.
    """

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            self._refuse_duplicates(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_duplicates(self, node: MappingNode) -> None:
        first: dict[Hashable, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
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
                    f"duplicate key {shown(key)} (also on line "
                    f"{earlier.start_mark.line + 1}); give each key once",
                    key_node.start_mark,
                )


def _error(source: str, document: int, err: BaseException) -> ConfigError:
    where = f"{source}, document {document}"
    if isinstance(err, DuplicateKeyError):
        return ConfigError(f"{where}: {one_line_yaml_error(err)}")
    character = getattr(err, "character", None)  # PyYAML's ReaderError
    if isinstance(character, int):
        return ConfigError(
            f"{where}: not valid YAML (character {chr(character)!r} at position "
            f"{getattr(err, 'position', '?')}: a YAML text holds no NUL or other "
            "control character)"
        )
    if isinstance(err, YAMLError):
        return ConfigError(f"{where}: not valid YAML ({one_line_yaml_error(err)})")
    if isinstance(err, RecursionError):
        return ConfigError(
            f"{where}: not valid YAML (nested too deeply to read; expected a few "
            "levels of mappings and lists)"
        )
    # ValueError: an integer of more than 4300 digits, a date like 2024-13-45
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ConfigError(
        f"{where}: not valid YAML (a number too large or a value unreadable: {text})"
    )


def load_yaml_documents(text: str, *, source: str) -> list[Any]:
    """Every document of ``text`` (None for an empty one), in order.

    Parameters
    ----------
    text
        YAML text, one or more documents.
    source
        Its name (a file path), for messages.

    Raises
    ------
    ConfigError
        One line naming ``source``, the document and, where known, the line.
    """
    docs: list[Any] = []
    loader: UniqueKeyLoader | None = None
    try:
        # The reader refuses NUL and other control characters at once.
        loader = UniqueKeyLoader(text)
        while loader.check_data():  # type: ignore[no-untyped-call]
            docs.append(loader.get_data())
    except (YAMLError, RecursionError, ValueError) as err:
        raise _error(source, len(docs) + 1, err) from None
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def load_yaml(text: str, *, source: str) -> Any:
    """The single document of ``text`` (None if empty); see load_yaml_documents."""
    docs = load_yaml_documents(text, source=source)
    if len(docs) > 1:
        raise ConfigError(
            f"{source}: holds {len(docs)} YAML documents (separated by ---); "
            "expected one"
        )
    return docs[0] if docs else None
