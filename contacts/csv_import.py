"""CSV files of contacts: the template, reading (UTF-8 with or without BOM, `;` or `,`),
cutting a file into batches by byte offset, turning a row into a contact, naming bad fields."""

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from core.contracts import ImportBatchSpec
from core.csv_cells import safe_cell

COLUMNS = (
    "external_id", "kind", "first_name", "last_name", "company_name", "date_of_birth", "language",
    "email", "mobile", "phone", "id_number", "id_expires_on", "passport_number",
    "passport_expires_on", "ssn", "industry", "industry_sector", "tags", "categories",
    "address_type", "address_line1", "address_line2", "postal_code", "city", "region", "country",
    "loyalty_id", "card_number",
)
EXAMPLE = {"external_id": "crm-1001", "kind": "person", "first_name": "Ann",
           "last_name": "de Vries", "language": "nl", "email": "ann@example.com",
           "mobile": "+31612345678",
           "tags": "vip|newsletter", "address_type": "home", "address_line1": "Dorpsstraat 1",
           "postal_code": "1234 AB", "city": "Utrecht", "country": "NL"}
SCALARS = ("kind", "first_name", "last_name", "company_name", "date_of_birth", "language",
           "id_number", "id_expires_on", "passport_number", "passport_expires_on", "ssn",
           "industry", "industry_sector", "external_id")
POINT_COLUMNS = ("email", "mobile", "phone")
MEDIUM_COLUMNS = {"loyalty_id": "loyalty_id", "card_number": "card"}
ADDRESS_COLUMNS = {"address_type": "type", "address_line1": "line1", "address_line2": "line2",
                   "postal_code": "postal_code", "city": "city", "region": "region",
                   "country": "country"}
LIST_SEPARATOR = "|"
MAX_ROWS = 100_000


class CsvRejected(ValueError):
    """The file as a whole cannot be imported (nothing of it is), or one row cannot."""


def template() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerow([EXAMPLE.get(c, "") for c in COLUMNS])
    return out.getvalue()


LONE_CR, LONE_LF = re.compile(rb"\r(?!\n)"), re.compile(rb"(?<!\r)\n")


def with_newlines(content: bytes) -> bytes:
    """A file whose lines end in CR alone (old Excel for Mac) with LF instead: the same length,
    so byte offsets hold either way. Rows end in the line end the file uses most: a quoted
    cell may hold a line break of another kind."""
    if len(LONE_CR.findall(content)) > len(LONE_LF.findall(content)):
        return LONE_CR.sub(b"\n", content)
    return content


def _lines(content: bytes, start: int) -> Iterator[tuple[int, str]]:
    """(byte offset after the line, line) from `start`; csv pulls lines only as it needs them,
    so the offset after a record is where the next one begins."""
    pos = start
    for raw in io.BytesIO(content[start:]):
        pos += len(raw)
        yield pos, raw.decode("utf-8")


def read_header(content: bytes) -> tuple[str, list[str], int]:
    """(delimiter, columns, byte offset of the first data row)."""
    start = len(codecs.BOM_UTF8) if content.startswith(codecs.BOM_UTF8) else 0
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CsvRejected(f"the file is not UTF-8 (byte {err.start + 1}): save it as CSV UTF-8, "
                          "or name its encoding in the Content-Type, e.g. "
                          "text/csv; charset=windows-1252") from err
    first = next(_lines(content, start), None)
    if first is None:
        raise CsvRejected("the file is empty")
    end, line = first
    if not line.strip(" \t\r\n,;"):
        raise CsvRejected("line 1 names no columns: the first line must name them, as in "
                          "GET /v1/contact-imports/template")
    delimiter = ";" if line.count(";") > line.count(",") else ","
    try:
        columns = [c.strip().lower() for c in next(csv.reader([line], delimiter=delimiter))]
    except csv.Error as err:
        raise CsvRejected(f"line 1: {err}") from err
    # A column without a name (a spreadsheet's trailing delimiter) is left out.
    named = [c for c in columns if c]
    unknown = [c for c in named if c not in COLUMNS]
    if unknown:
        # The first few: a header of a million columns must not make a megabyte of answer.
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise CsvRejected(f"unknown column(s) {[c[:50] for c in unknown[:10]]}{more}; the "
                          f"template has {list(COLUMNS)}")
    if twice := [c for c in dict.fromkeys(named) if named.count(c) > 1]:
        raise CsvRejected(f"column(s) {twice[:10]} appear twice in the header "
                          "(the header's letter case does not count)")
    return delimiter, columns, end


class Record(NamedTuple):
    line: int  # where the record starts in the file
    end: int  # byte offset after it
    last_line: int  # where it ends (a quoted cell may hold line breaks)
    cells: list[str]  # empty when unreadable
    unreadable: str | None = None  # why the CSV reader could not read it


def unreadable(problem: str) -> str:
    if "field limit" in problem:
        return f"{problem}: a cell may hold at most {csv.field_size_limit():,} characters"
    return f'{problem}: a cell with a quote must be enclosed in quotes, and a quote inside it ' \
        'doubled ("")'


def records(content: bytes, *, start: int, end: int | None, first_line: int, delimiter: str,
            width: int) -> Iterator[Record]:
    """Each non-blank row. A row the CSV reader cannot read (a stray or unbalanced quote) is
    one unreadable record of one line, and reading goes on at the next line: one bad quote
    must not cost the rows after it. So is a row that runs over several lines (a quoted cell
    with line breaks) but does not have the header's `width` of cells, where a cell with a line
    break holds the delimiter too: a quote that opened a cell and closed in a later row,
    swallowing the rows between. Without the delimiter, it is a row with a cell of several
    lines, one or more cells short or long, which the row's own check reports."""
    content = content if end is None else content[:end]
    state = {"line": first_line - 1, "pos": start}

    def feed(lines: Iterator[tuple[int, str]]) -> Iterator[str]:
        for pos, line in lines:
            state["line"] += 1
            state["pos"] = pos
            yield line

    next_line, record_start = first_line, start
    reader = csv.reader(feed(_lines(content, start)), delimiter=delimiter, strict=True)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            problem = str(err)
        else:
            if (state["line"] == next_line or len(cells) == width
                    or not any(delimiter in c for c in cells if "\n" in c or "\r" in c)):
                if any(c.strip() for c in cells):
                    yield Record(next_line, state["pos"], state["line"], cells)
                next_line, record_start = state["line"] + 1, state["pos"]
                continue
            problem = "a quote opened in this row is not closed in it"
        after_line = content.find(b"\n", record_start)
        after_line = len(content) if after_line < 0 else after_line + 1
        yield Record(next_line, after_line, next_line, [], unreadable(problem))
        state.update(line=next_line, pos=after_line)
        reader = csv.reader(feed(_lines(content, after_line)), delimiter=delimiter, strict=True)
        next_line, record_start = next_line + 1, after_line


def plan(content: bytes, batch_size: int) -> tuple[str, list[str], list[ImportBatchSpec], int]:
    """Reads the whole file once: header, row count, and the byte range of each batch."""
    delimiter, columns, start = read_header(content)
    batches: list[ImportBatchSpec] = []
    # A batch is read again from its first byte, blank lines before its first row included:
    # its line numbers count from the line there.
    batch_start, batch_line, rows, total = start, 2, 0, 0
    for record in records(content, start=start, end=None, first_line=2, delimiter=delimiter,
                          width=len(columns)):
        rows += 1
        total += 1
        if total > MAX_ROWS:
            raise CsvRejected(f"more than {MAX_ROWS} rows")
        if rows == batch_size:
            batches.append(ImportBatchSpec(len(batches), batch_start, record.end, batch_line,
                                           rows))
            batch_start, batch_line, rows = record.end, record.last_line + 1, 0
    if rows:
        batches.append(ImportBatchSpec(len(batches), batch_start, len(content), batch_line, rows))
    return delimiter, columns, batches, total


def row_data(columns: list[str], cells: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The row as a ContactCreate body, and which column each nested field came from."""
    if len(cells) > len(columns) and not any(c.strip() for c in cells[len(columns):]):
        # Empty cells past the header's last column: a spreadsheet's trailing delimiters.
        cells = cells[:len(columns)]
    if len(cells) != len(columns):
        raise CsvRejected(f"{len(cells)} cells where the header has {len(columns)}")
    v = {c: cell.strip() for c, cell in zip(columns, cells) if c and cell.strip()}
    data: dict[str, Any] = {f: v[f] for f in SCALARS if f in v}
    origin: dict[str, str] = {}
    points = []
    for col in POINT_COLUMNS:
        if col in v:
            origin[f"contact_points[{len(points)}]"] = col
            points.append({"kind": col, "value": v[col]})
    media = []
    for col, kind in MEDIUM_COLUMNS.items():
        if col in v:
            origin[f"identification_media[{len(media)}]"] = col
            media.append({"kind": kind, "value": v[col]})
    address = {field: v[col] for col, field in ADDRESS_COLUMNS.items() if col in v}
    for col, field in ADDRESS_COLUMNS.items():
        origin[f"addresses[0].{field}"] = col
    origin["addresses"] = "address_type"
    data.update(contact_points=points, identification_media=media,
                addresses=[address] if address else [])
    for col in ("tags", "categories"):
        if col in v:
            data[col] = [t for t in v[col].split(LIST_SEPARATOR) if t.strip()]
    return data, origin


def column_of(field: str, origin: dict[str, str]) -> str:
    """'contact_points[1].value' -> 'mobile'; 'tags[2]' -> 'tags'; 'last_name' -> 'last_name'."""
    if field in origin:
        return origin[field]
    head = field.split(".")[0]
    if head in origin:
        return origin[head]
    if field.startswith("addresses[0]"):
        return origin.get(f"addresses[0].{field.split('.')[-1]}", "address_type")
    return field.split("[")[0].split(".")[0]


def errors_csv(errors: list[tuple[int, str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("line", "field", "message"))
    writer.writerows([safe_cell(value) for value in error] for error in errors)
    return out.getvalue()
