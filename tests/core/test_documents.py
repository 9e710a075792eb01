"""Reading YAML and JSON documents: bad files, encodings, syntax, nesting and alias bombs, each one clear line."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sovstack.core import documents
from sovstack.core.errors import BadDocument
from tests.conftest import LAUGHS


def refused(path: Path) -> str:
    with pytest.raises(BadDocument) as caught:
        documents.read_text(path)
    assert caught.value.message.startswith(f"{path}: ")
    return caught.value.problem


def test_files_that_are_not_utf8_text_are_refused_naming_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "stack.yaml"
    binary.write_bytes(bytes(range(256)))
    assert refused(binary) == "binary data, not text"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: Café\nhome: FR\n".encode("latin-1"))
    assert refused(latin1) == "not UTF-8 text (byte 0xe9 at line 1, column 10); save it as UTF-8"
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_text("name: x\n", encoding="utf-16")
    assert refused(utf16) == "UTF-16 text; save it as UTF-8"
    empty = tmp_path / "empty.yaml"
    empty.write_text(" \n\n")
    assert refused(empty) == "the file is empty"
    assert refused(tmp_path) == "a folder, not a file"
    assert refused(tmp_path / "missing.yaml") == "no such file"
    huge = tmp_path / "huge.json"
    with huge.open("wb") as fh:
        fh.truncate(documents.MAX_BYTES + 1)  # sparse: costs no disk
    assert refused(huge) == "larger than 32 MiB"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("a: 1\n")
    secret.chmod(0)
    assert refused(secret) == "permission denied"


def test_a_utf8_byte_order_mark_is_accepted_in_yaml_and_json(tmp_path: Path) -> None:
    for name, text in (("bom.yaml", "name: Café\n"), ("bom.json", '{"name": "Café"}')):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert documents.load(documents.read_text(path), name) == {"name": "Café"}


def test_invalid_yaml_keeps_its_line_column_and_cause() -> None:
    with pytest.raises(BadDocument) as caught:
        documents.load_yaml("a:\n  - b\n c: d\n", "bad.yaml")
    assert caught.value.message == ("bad.yaml: not valid YAML: did not find expected key (line 3, column 2), "
                                    "while parsing a block mapping (line 1, column 1)")
    with pytest.raises(BadDocument, match=r"bad.json: not valid JSON: Expecting value \(line 2, column 7\)"):
        documents.load('{\n "a": ,}', "bad.json")
    with pytest.raises(BadDocument, match="bad.yaml: not valid YAML: month must be in 1..12"):
        documents.load_yaml("as_of: 2026-13-45\n", "bad.yaml")


def test_nesting_deeper_than_the_limit_is_refused_in_json_and_yaml() -> None:
    deepest = documents.MAX_DEPTH
    assert documents.load("[" * deepest + "]" * deepest, "ok.json") is not None
    assert documents.load_yaml("[" * deepest + "]" * deepest, "ok.yaml") is not None
    for depth in (deepest + 1, 100_000):  # 100,000 is past the json module's own recursion limit
        with pytest.raises(BadDocument, match="deep.json: nested more than 100 levels deep"):
            documents.load("[" * depth + "]" * depth, "deep.json")
    with pytest.raises(BadDocument, match="deep.yaml: nested more than 100 levels deep"):
        documents.load_yaml("a: " + "[" * deepest + "]" * deepest, "deep.yaml")
    with pytest.raises(BadDocument, match="deep.yaml: nested more than 100 levels deep"):
        block = "".join("  " * i + f"k{i}:\n" for i in range(deepest + 1)) + "  " * (deepest + 1) + "v\n"
        documents.load_yaml(block, "deep.yaml")
    with pytest.raises(BadDocument, match="loop.yaml: nested more than 100 levels deep"):
        documents.load_yaml("a: &a [*a]\n", "loop.yaml")  # an alias of itself would never end


def test_a_billion_laughs_is_refused_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(BadDocument) as caught:
        documents.load_yaml(LAUGHS, "laughs.yaml")
    assert time.perf_counter() - started < 0.5
    assert caught.value.message == ("laughs.yaml: its YAML aliases expand it to over 100,000 values, the limit for "
                                    "its size; write the repeated parts out instead")


def test_aliases_within_the_limit_still_work() -> None:
    text = "base: &base {region: IN, tier: 1}\n" + "".join(f"d{i}: *base\n" for i in range(1000))
    data = documents.load_yaml(text, "shared.yaml")
    assert data["d999"] == {"region": "IN", "tier": 1}
    assert documents.load_yaml(LAUGHS.split("\nc:")[0], "two-levels.yaml")["b"][8] == ["lol"] * 9
