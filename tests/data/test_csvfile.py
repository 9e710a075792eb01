"""CSV files from other tools: published as they are, or refused naming the line; never silently mangled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from sovstack.cli import run
from sovstack.data import ingest
from tests.data.conftest import Commons


def rows_of(commons: Commons, version: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every row of a published version, read back from its Parquet object."""
    path = ingest.object_path(commons.home / "objects", version["sha256"])
    return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()


def names_of(version: dict[str, Any]) -> list[str]:
    return [c["name"] for c in version["columns"]]


def test_a_ragged_csv_is_refused_naming_the_line_unless_confirmed(commons: Commons) -> None:
    commons.create("ragged")
    ragged = "x,y\n" + "".join(f"{i},{i * 2},{i * 3}\n" for i in range(100))  # it was published as 99 rows
    refused = commons.publish("ragged", ragged)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "file"
    assert "line 2 has 3 fields but the header has 2 ('0,0,0')" in error["message"]
    assert any("allow_ragged_rows" in reason for reason in error["reasons"])
    assert commons.client.get("/api/v1/data/datasets/ragged", headers=commons.steward).json()["current_version"] == 0

    confirmed = commons.publish("ragged", ragged, allow_ragged_rows="true", note="from the old export")
    assert confirmed.status_code == 201, confirmed.text
    version = confirmed.json()
    assert version["rows"] == 100 and names_of(version) == ["x", "y", "column3"]
    assert rows_of(commons, version)[:2] == [("0", "0", "0"), ("1", "2", "3")]
    assert version["note"].startswith("from the old export [published with rows that differ from the header")


def test_a_short_row_in_the_middle_is_named(commons: Commons) -> None:
    commons.create("short")
    body = "a,b,c\n" + "1,2,3\n" * 40 + "4,5\n" + "6,7,8\n" * 40
    error = commons.publish("short", body).json()["error"]
    assert "line 42 has 2 fields but the header has 3 ('4,5')" in error["message"]
    confirmed = commons.publish("short", body, allow_ragged_rows="true").json()
    assert confirmed["rows"] == 81 and rows_of(commons, confirmed)[40] == ("4", "5", None)


@pytest.mark.parametrize(("made_by", "content", "params", "names", "rows"), [
    ("Excel (UTF-8 with BOM)", "\ufeffname,n\r\nZoë,1\r\nÅsa,2\r\n".encode(), {}, ["name", "n"],
     [("Zoë", 1), ("Åsa", 2)]),
    ("Windows (CRLF)", b"name,n\r\nA,1\r\nB,2\r\n", {}, ["name", "n"], [("A", 1), ("B", 2)]),
    ("quoted newlines", b'name,text\nA,"line one\nline two"\nB,"say ""hi"""\n', {}, ["name", "text"],
     [("A", "line one\nline two"), ("B", 'say "hi"')]),
    ("a European spreadsheet (;)", b"name;n;share\nA;1;2,5\nB;2;3,5\n", {}, ["name", "n", "share"],
     [("A", 1, "2,5"), ("B", 2, "3,5")]),
    ("a tab-separated export", b"name\tn\nA\t1\nB\t2\n", {}, ["name", "n"], [("A", 1), ("B", 2)]),
    ("Latin-1, said so", "name,n\nZoë,1\nÅsa,2\n".encode("latin-1"), {"encoding": "latin-1"}, ["name", "n"],
     [("Zoë", 1), ("Åsa", 2)]),
    ("a text value after 30,000 numbers", ("id,code\n" + "".join(f"{i},{i}\n" for i in range(30_000))
                                           + "30000,A7\n").encode(), {}, ["id", "code"], None),
])
def test_csv_from_other_tools_is_read_as_it_is(commons: Commons, made_by: str, content: bytes,
                                              params: dict[str, str], names: list[str],
                                              rows: list[tuple[Any, ...]] | None) -> None:
    commons.create("other_tool")
    r = commons.publish("other_tool", content, **params)
    assert r.status_code == 201, f"{made_by}: {r.text}"
    version = r.json()
    assert names_of(version) == names, made_by
    read = rows_of(commons, version)
    if rows is not None:
        assert read == rows, made_by
    else:
        assert len(read) == 30_001 and read[-1] == (30_000, "A7")


def test_latin1_not_said_is_refused_naming_the_line(commons: Commons) -> None:
    commons.create("accents")
    error = commons.publish("accents", "name,n\nAna,1\nZoë,2\n".encode("latin-1")).json()["error"]
    assert error["message"] == "line 3 of the CSV file is not utf-8 text; nothing was published"
    assert "encoding=latin-1" in error["reasons"][0]


@pytest.mark.parametrize(("content", "fmt"), [
    (b"PAR1 not really parquet", "parquet"),
    (b'{"a": 1}\n{"a": \n', "jsonl"),
    (b"a,b\n1,\xff\xfe\n", "csv"),
    (b'a,b\n1,"unterminated\n', "csv"),
])
def test_upload_errors_show_neither_server_paths_nor_sql(commons: Commons, content: bytes, fmt: str) -> None:
    commons.create("private_paths")
    r = commons.publish("private_paths", content, fmt=fmt)
    assert r.status_code == 422, r.text
    text = r.text
    assert str(commons.home) not in text and "/tmp" not in text and "objects" not in text, text
    assert not any(sql in text for sql in ("read_csv", "read_parquet", "read_json", "COPY", "SELECT", "LINE 1")), text


def test_the_cli_refuses_a_ragged_csv_in_one_line_and_publishes_it_when_confirmed(
        commons: Commons, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    commons.create("cli_ragged")
    csv = tmp_path / "ragged.csv"
    csv.write_text("x,y\n1,2,3\n4,5,6\n")
    home = ["--home", str(commons.home)]
    assert run([*home, "data", "publish", "cli_ragged", str(csv)]) == 2
    err = capsys.readouterr().err
    assert "line 2 has 3 fields but the header has 2" in err and len(err.strip().splitlines()) == 1
    assert run([*home, "data", "publish", "cli_ragged", str(csv), "--allow-ragged-rows"]) == 0
    assert "2 rows" in capsys.readouterr().out
