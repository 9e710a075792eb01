"""CSV files made by other tools, read so that nothing is silently lost.

The header row decides the columns. DuckDB reads the file with that header and a strict parser (no
skipped lines, no comment lines, every row with the header's number of fields); a file whose rows
do not match is refused with the lines that differ, unless the steward accepts a parse that differs
from the header (``allow_ragged_rows``): then every row is kept, short rows get empty values, extra
fields become columns of their own, and every column is text (the version's note says so).

Handled: a UTF-8 byte-order mark, CRLF line ends, quoted values spanning lines, ``;``, tab and ``|``
delimiters (found from the header line when not given), Latin-1 text when the steward says so.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sovstack.core.errors import BadInput

if TYPE_CHECKING:
    import duckdb

DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "latin-1")
EXTRA_COLUMNS = 256  # how many fields beyond the header an accepted ragged row may have
HEADER_MAX_BYTES = 16 << 20
PARQUET = "(FORMAT parquet, COMPRESSION zstd)"
_FOUND = re.compile(r"Found:\s*(\d+)")
_LINE = re.compile(r"CSV Error on Line:\s*(\d+)")


@dataclass(frozen=True)
class Dialect:
    """How one file is read: its delimiter and encoding, and the fields of its header row."""

    delimiter: str
    encoding: str
    header: list[str]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dialect(source: Path, delimiter: str | None, encoding: str) -> Dialect:
    """The header's fields and the delimiter: as given, else whichever of , ; TAB | the header line holds most."""
    if encoding not in ENCODINGS:
        raise BadInput(f"unknown encoding {encoding!r}; one of {', '.join(ENCODINGS)}", field="encoding")
    if delimiter is not None and len(delimiter) != 1:
        raise BadInput("the delimiter must be one character", field="delimiter")
    # Text that does not decode is DuckDB's to report, with its line: here it only must not stop the header.
    try:
        with source.open(encoding="utf-8-sig" if encoding == "utf-8" else encoding, errors="replace",
                         newline="") as f:
            first_line = f.readline(HEADER_MAX_BYTES)
            chosen = delimiter or max(DELIMITERS, key=first_line.count)  # ties and none: the comma
            f.seek(0)
            header = next(csv.reader(f, delimiter=chosen, quotechar='"', doublequote=True, strict=True), [])
    except csv.Error as exc:
        raise BadInput("the header line of the CSV file could not be read", field="file", reasons=[str(exc)]) from exc
    if not header:
        raise BadInput("the CSV file has no header line (its first line is empty)", field="file")
    return Dialect(chosen, encoding, header)


def _not_text(encoding: str, line: int) -> BadInput:
    hint = ("if the file comes from a tool that writes Latin-1 (Windows-1252), publish with encoding=latin-1, "
            "or save it as UTF-8" if encoding == "utf-8" else "save it as UTF-8 and publish with encoding=utf-8")
    return BadInput(f"line {line} of the CSV file is not {encoding} text; nothing was published", field="file",
                    reasons=[hint])


def _options(d: Dialect) -> str:
    # Every choice is made here, none left to the sniffer: it would skip lines it takes for a preamble
    # or comments, or take the first data row for the header when the rows do not match it.
    return (f"header=true, skip=0, delim={_sql_string(d.delimiter)}, quote='\"', escape='\"', comment='', "
            f"encoding={_sql_string(d.encoding)}")


def copy(source: Path, d: Dialect, target: Path, con: duckdb.DuckDBPyConnection, *, allow_ragged_rows: bool) -> str:
    """Write the file to Parquet at ``target`` as its header says; BadInput naming the lines that differ.

    Returns "" or, for a confirmed parse that differs from the header, the remark for the version's note.
    """
    import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

    failure: duckdb.Error | None = None
    for sample in ("", ", sample_size=-1"):  # types from the first rows, else (a late value did not fit) all
        try:
            con.execute(f"COPY (SELECT * FROM read_csv({_sql_string(str(source))}, {_options(d)}, strict_mode=true, "
                        f"null_padding=false{sample})) TO {_sql_string(str(target))} {PARQUET}")
        except duckdb.Error as exc:
            failure = exc
        else:
            if len(con.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_string(str(target))})").fetchall()) \
                    == len(d.header):
                return ""
        ragged, problem = _diagnose(source, d)
        if ragged and allow_ragged_rows:
            return ragged_copy(source, d, target, con)
        if problem is not None:
            raise problem
        line = _LINE.search(str(failure))
        if failure is not None and "Invalid unicode" in str(failure):  # not always among the rejects
            raise _not_text(d.encoding, int(line.group(1)) if line else 1) from failure
    raise BadInput("the file could not be read as CSV; nothing was published", field="file",
                   reasons=[first_line(failure, source, target)] if failure else []) from failure


def _text_columns(count: int) -> str:
    return "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(count)) + "}"


def _diagnose(source: Path, d: Dialect) -> tuple[bool, BadInput | None]:
    """Whether rows differ from the header in their number of fields, and the refusal naming the lines at
    fault (None when no line is: then the fault was a type inferred from too few rows)."""
    import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

    width = len(d.header)
    with duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "512MB"}) as con:
        try:
            con.execute(f"SELECT count(*) FROM read_csv({_sql_string(str(source))}, {_options(d)}, strict_mode=true, "
                        f"null_padding=false, auto_detect=false, columns={_text_columns(width)}, "
                        "store_rejects=true, rejects_limit=20)").fetchall()  # the rejects are kept once it is read
        except duckdb.Error as exc:  # not a line at fault: the whole file (its encoding, its size)
            return False, BadInput("the file could not be read as CSV; nothing was published", field="file",
                                   reasons=[first_line(exc, source)])
        faults = con.execute("SELECT line, error_type, error_message, csv_line FROM reject_errors "
                             "ORDER BY line LIMIT 5").fetchall()
    if not faults:
        return False, None
    line, kind, _, _ = faults[0]
    if kind == "INVALID ENCODING":
        return False, _not_text(d.encoding, int(line))
    reasons = [_fault(width, *fault) for fault in faults]
    if any(k not in ("TOO MANY COLUMNS", "MISSING COLUMNS") for _, k, _, _ in faults):
        return False, BadInput(f"line {line} of the CSV file could not be read; nothing was published",
                               field="file", reasons=reasons)
    return True, BadInput(f"the rows of the CSV file do not match its header: {reasons[0]}; nothing was published",
                          field="file", reasons=[*reasons[1:], _delimiter_hint(d), _RAGGED_HINT])


_RAGGED_HINT = ("to publish the rows as they are, confirm with allow_ragged_rows: short rows get empty values, "
                "extra fields become columns of their own, every column is text")


def _fault(width: int, line: int, kind: str, message: str, text: str) -> str:
    shown = text if len(text) <= 120 else text[:117] + "…"
    found = _FOUND.search(message or "")
    if kind in ("TOO MANY COLUMNS", "MISSING COLUMNS") and found:
        fields = int(found.group(1))
        return f"line {line} has {fields} field{'s' if fields != 1 else ''} but the header has {width} ({shown!r})"
    return f"line {line}: {kind.lower()} ({shown!r})"


def _delimiter_hint(d: Dialect) -> str:
    shown = {"\t": "TAB"}.get(d.delimiter, d.delimiter)
    return f"fields were split at {shown!r} (give delimiter= if the file uses another one)"


def ragged_copy(source: Path, d: Dialect, target: Path, con: duckdb.DuckDBPyConnection) -> str:
    """Write every row of the file to Parquet at ``target``, as text, however many fields it has; say how."""
    import duckdb  # loaded at first use: a server process serving other modules need not carry DuckDB

    width = len(d.header) + EXTRA_COLUMNS
    reader = (f"read_csv({_sql_string(str(source))}, {_options(d)}, strict_mode=true, null_padding=true, "
              f"parallel=false, auto_detect=false, columns={_text_columns(width)})")
    try:
        counts = con.execute(f"SELECT {', '.join(f'count(c{i})' for i in range(len(d.header), width))} "
                             f"FROM {reader}").fetchone()
    except duckdb.Error as exc:
        raise BadInput(f"a line of the CSV file has more than {width} fields, or cannot be read; nothing was "
                       "published", field="file", reasons=[first_line(exc, source)]) from exc
    assert counts is not None
    used = len(d.header) + max((i + 1 for i, n in enumerate(counts) if n), default=0)
    names = _names(d.header, used)
    select = ", ".join(f'c{i} AS "{name.replace(chr(34), chr(34) * 2)}"' for i, name in enumerate(names))
    con.execute(f"COPY (SELECT {select} FROM {reader}) TO {_sql_string(str(target))} {PARQUET}")
    extra = used - len(d.header)
    return ("published with rows that differ from the header, as confirmed: short rows padded with empty values"
            + (f", {extra} column{'s' if extra != 1 else ''} beyond the header ({', '.join(names[len(d.header):])})"
               if extra else "") + "; every column is text (retype columns to correct that)")


def _names(header: list[str], count: int) -> list[str]:
    """The header's names (blank ones as columnN), then columnN for the fields beyond it; all distinct."""
    names: list[str] = []
    for i in range(count):
        name = (header[i].strip() if i < len(header) else "") or f"column{i + 1}"
        base, n = name, 1
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def first_line(exc: BaseException, *paths: Path) -> str:
    """DuckDB's first line about ``exc``, without the server's paths or the SQL that was run."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    text = re.sub(r"""(["'])/[^"']*\1""", "(the uploaded file)", text)
    for path in paths:
        text = text.replace(str(path), "(the uploaded file)")
    return text

