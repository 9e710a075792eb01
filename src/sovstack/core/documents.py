"""YAML and JSON documents people hand to sovstack, read and parsed without tracebacks or runaway memory.

Every manifest, catalogue, policy, criteria set or scenario book the product reads — from a file, a
request body or a form — goes through here, so a bad one is refused as ``BadDocument`` ("name: what is
wrong", one line) whatever the caller:

- files: missing, a folder, unreadable, larger than ``MAX_BYTES``, binary, not UTF-8 (a UTF-8 byte order
  mark is accepted and dropped);
- text: empty; nested deeper than ``MAX_DEPTH`` (deeper input ends in a ``RecursionError`` in the
  parsers or in whatever walks the data next);
- YAML: syntax errors keep their line, column and cause; aliases may not expand a document past
  ``ALIAS_FLOOR`` values or two per byte of its text, whichever is more (a 750-byte "billion laughs"
  document otherwise grows to gigabytes in whatever walks it), checked on the composed nodes before any
  Python object is built;
- JSON: syntax errors with line and column.
"""

from __future__ import annotations

import codecs
import json
import os
from itertools import chain
from pathlib import Path
from typing import Any

import yaml

from sovstack.core.errors import BadDocument

MAX_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 100
ALIAS_FLOOR = 100_000
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"
_EMPTY = "empty: no YAML or JSON in it"

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10× faster
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
              (codecs.BOM_UTF16_BE, "UTF-16"))


def read_text(path: Path, *, field: str | None = None) -> str:
    """The text of a UTF-8 file of at most ``MAX_BYTES``, or ``BadDocument`` saying why it is not one."""
    name = str(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)  # bounded: a device or a huge file is never read whole
    except FileNotFoundError as exc:
        raise BadDocument(name, "no such file", field=field) from exc
    except IsADirectoryError as exc:
        raise BadDocument(name, "a folder, not a file", field=field) from exc
    except PermissionError as exc:
        raise BadDocument(name, "permission denied", field=field) from exc
    except OSError as exc:
        raise BadDocument(name, f"cannot be read: {exc.strerror or exc}", field=field) from exc
    if len(raw) > MAX_BYTES:
        raise BadDocument(name, f"larger than {MAX_BYTES // 2**20} MiB", field=field)
    text = decode(raw, name, field=field)
    if not text.strip():
        raise BadDocument(name, "the file is empty", field=field)
    return text


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all: a failure leaves what was there."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def decode(raw: bytes, name: str, *, field: str | None = None) -> str:
    """UTF-8 bytes as text (a byte order mark dropped), or ``BadDocument`` naming the first bad byte."""
    for bom, encoding in _WIDE_BOMS:
        if raw.startswith(bom):
            raise BadDocument(name, f"{encoding} text; save it as UTF-8", field=field)
    if b"\0" in raw:
        raise BadDocument(name, "binary data, not text", field=field)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise BadDocument(name, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}, column {column}); "
                                "save it as UTF-8", field=field) from exc


def load(text: str, name: str, *, field: str | None = None) -> Any:
    """YAML or JSON text as data; text opening with ``{`` or ``[`` takes the much faster JSON parser."""
    if text.lstrip().startswith(("{", "[")):
        return load_json(text, name, field=field)
    return load_yaml(text, name, field=field)


def load_json(text: str, name: str, *, field: str | None = None) -> Any:
    """JSON text as data, or ``BadDocument`` with the line and column of the first error."""
    _check_size(text, name, field)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadDocument(name, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                          field=field) from exc
    except RecursionError as exc:  # the json module's own limit, met before ours can be checked
        raise BadDocument(name, _TOO_DEEP, field=field) from exc
    except ValueError as exc:  # a number Python refuses to convert (an integer of over 4,300 digits)
        raise BadDocument(name, f"not valid JSON: {exc}", field=field) from exc
    _check_depth(data, name, field)
    return data


def load_yaml(text: str, name: str, *, field: str | None = None) -> Any:
    """YAML text as data (safe tags only), or ``BadDocument`` with the line, column and cause of the error."""
    _check_size(text, name, field)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, len(text), name, field)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise BadDocument(name, f"not valid YAML: {yaml_problem(exc)}", field=field) from exc
    except yaml.YAMLError as exc:
        raise BadDocument(name, f"not valid YAML: {exc}", field=field) from exc
    except RecursionError as exc:  # the pure-Python composer recurses per level (libyaml stops at 1,000)
        raise BadDocument(name, _TOO_DEEP, field=field) from exc
    except ValueError as exc:  # a scalar the safe constructor cannot convert: 2026-13-45, 5,000 digits
        raise BadDocument(name, f"not valid YAML: {exc}", field=field) from exc
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """What went wrong and where, on one line: ``did not find expected key (line 3, column 2), while parsing…``."""
    text = f"{exc.problem or 'invalid'}{_at(exc.problem_mark)}"
    if exc.context:
        text += f", {exc.context}" + ("" if _at(exc.context_mark) == _at(exc.problem_mark) else _at(exc.context_mark))
    return text


def _at(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def _check_size(text: str, name: str, field: str | None) -> None:
    if not text.strip():
        raise BadDocument(name, _EMPTY, field=field)
    if len(text) > MAX_BYTES:
        raise BadDocument(name, f"larger than {MAX_BYTES // 2**20} MiB", field=field)


def _check_depth(data: Any, name: str, field: str | None) -> None:
    """Refuse data nested deeper than ``MAX_DEPTH``, walking one level at a time (no recursion).

    ``type(v) is`` and one flat comprehension per level: the walk costs about a third of ``json.loads``.
    """
    level = [data] if type(data) is dict or type(data) is list else []
    for _ in range(MAX_DEPTH):
        values = chain.from_iterable(v.values() if type(v) is dict else v for v in level)
        level = [v for v in values if type(v) is dict or type(v) is list]
        if not level:
            return
    raise BadDocument(name, _TOO_DEEP, field=field)


def _check_nodes(root: yaml.Node, size: int, name: str, field: str | None) -> None:
    """Refuse a composed document nested too deeply, or whose aliases expand it too far.

    Aliases point at the same node, so the walk goes one level at a time, counting how many times each
    node of the level is reached: a billion laughs is a handful of nodes with huge counts, found at once.
    """
    limit = max(ALIAS_FLOOR, 2 * size)
    level: dict[int, list[Any]] = {id(root): [root, 1]}
    values = 0
    for _ in range(MAX_DEPTH):
        below: dict[int, list[Any]] = {}
        for node, times in level.values():
            values += times
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            else:
                continue
            for child in children:
                if isinstance(child, yaml.ScalarNode):  # leaves: counted here, kept out of the next level
                    values += times
                    continue
                entry = below.get(id(child))
                if entry is None:
                    below[id(child)] = [child, times]
                else:
                    entry[1] += times
        if values > limit:
            raise BadDocument(name, f"its YAML aliases expand it to over {limit:,} values, the limit for its size; "
                                    "write the repeated parts out instead", field=field)
        if not below:
            return
        level = below
    raise BadDocument(name, _TOO_DEEP, field=field)
