"""Bad input as a corpus: hostile or broken inputs at every edge, each refused with a clear error (the status,
code or exit AND a message naming the file/line/field/parameter) while every other job stays as it was.

Inputs are data files under ``tests/corpus/`` where a file is natural (``files/`` recipient files,
``oss_events/`` OSS trigger events, ``timer/`` timer events); the big or binary ones (a 10 MB line,
workbooks, a zip bomb, deep JSON, 100k recipients, 10k event records) are built here. Each case runs
against the local cloud through the product's own edges — the ingest core on an OSS upload (files), the
ingest on a raw event (OSS events), the api handler as FC calls it (HTTP bodies, headers, query strings),
the timer — and then:

- the job that was finished before the whole corpus ran keeps its status, counts and report, and no job
  that existed before the case changed at all;
- a refused input queued no invocation and made no CAMS call;
- a healthy submission after the case is sent in full.

The count by kind (:func:`corpus_counts`; ``test_the_corpus_is_big_enough`` prints it with ``-s`` and holds
the total at 50 or more), 124 cases, 11 of them legitimate inputs among the hostile ones that must just work
(a UTF-8 BOM, CRLF, a header only, ragged rows...):

=========  =====  ==============================================================================
kind       cases  what
=========  =====  ==============================================================================
csv        33     BOMs (UTF-8 once/twice/mid-file, UTF-16 LE/BE, UTF-32), NUL bytes, CRLF/CR mixes, a
                  10 MB line and a 10 MB header, quotes unclosed/stray, header only, no header,
                  duplicate/blank headers, formula injection (defused in the report), Latin-1/CP1252,
                  HTML/PDF/XLS given as CSV; a refused file is refused three ways: the upload's job
                  fails (with its error object), the HTTP body is 400, ``chatapp-mass check`` exits 2
xlsx       7      no sheets, encrypted (OLE2), a .docx named .xlsx, cut in half, bad sheet XML, an
                  empty sheet, a ZIP bomb
oss_event  20     not JSON, missing/mistyped fields, another bucket, ``../`` keys (plain and
                  URL-encoded), ``+``/``%`` keys, a NUL in a key, deep nesting, 10,000 records
http_body  26     not JSON, arrays/strings/null, deep nesting, huge numbers, wrong types, unknown
                  fields, 100k recipients inline, bad base64, both/neither sources
header     10     bad Content-Types, an oversized or non-ASCII Idempotency-Key, missing, Basic, empty,
                  doubled and non-ASCII Authorization
query      15     limit=-1/abc/0/201/1e3/1,2/², preview=maybe, force=sometimes, cursor=garbage,
                  schedules, unknown options, a missing sheet
timer      13     not JSON, missing/mistyped triggerTime, deep nesting, payloads not JSON, a list, the
                  wrong shape, unknown fields, an empty or malformed source, a bad option
=========  =====  ==============================================================================
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from chatapp_mass.entry.http_api import HttpEvent
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.jobs import EventError
from chatapp_mass.services.timer import Timer

from test_http_api import OPTIONS, TOKEN, Api
from world import SEND_FLAGS

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# --- the cases --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    kind: str  # csv | xlsx | oss_event | http_body | header | query | timer
    name: str
    run: Callable[[Harness], None]  # drives the input and asserts the refusal (or the documented acceptance)
    accepted: bool = False  # a legitimate input among the hostile ones (a BOM, CRLF): it must just work
    xfail: str = ""


CASES: list[Case] = []


def case(kind: str, name: str, *, accepted: bool = False, xfail: str = "") -> Callable[..., Any]:
    def register(run: Callable[[Harness], None]) -> Callable[[Harness], None]:
        CASES.append(Case(kind, name, run, accepted, xfail))
        return run

    return register


def corpus_counts() -> dict[str, int]:
    return dict(Counter(c.kind for c in CASES))


# --- the harness ------------------------------------------------------------------------------------------
@dataclass
class Harness:
    api: Api
    cloud: LocalCloud
    healthy_seq: int = 0
    created: list[str] = field(default_factory=list)  # the jobs a case may create (a failed one)
    first_job_id: str = ""  # the job finished before any case ran

    # files, through an OSS upload and the ingest core
    def upload_and_ingest(self, name: str, data: bytes, suffix: str = ".csv") -> Any:
        key = f"incoming/corpus-{secrets.token_hex(3)}-{name}{suffix}"
        [result] = self.api.world.ingest(self.api.world.upload(key, data))
        if result.job_id:
            self.created.append(result.job_id)
        return result, key

    def refused_file(self, name: str, data: bytes, *mentions: str, suffix: str = ".csv") -> dict[str, Any]:
        """The upload fails its job: the result, the job's reason and the error object name the file and
        ``mentions`` (a line, a column); nothing is sent. The same bytes as an HTTP body (``POST /jobs``,
        the CSV or workbook content type) are refused 400 naming the line (``field``) the same way, and
        ``chatapp-mass check FILE`` exits 2 naming the file and the same."""
        self.refused_by_the_cli(name, data, mentions, suffix)
        if len(data) <= self.api.api.api.max_body:
            kind = XLSX_TYPE if suffix == ".xlsx" else "text/csv"
            status, body = self.http("POST", "/jobs", data, headers={"Content-Type": kind}, query=OPTIONS)
            error = body["error"]
            if error["code"] == "empty_body":  # refused before it is read
                assert (status, error["field"]) == (400, "body"), body
            else:
                assert (status, error["code"]) == (400, "invalid_csv"), body
                assert error["message"].startswith("http:"), error  # the body's name, as the file's
                for text in mentions:
                    assert text in error["message"], (text, error)
                field = error["field"]
                assert field == "file" or (field.startswith("line ") and field in error["message"]), error
        result, key = self.upload_and_ingest(name, data, suffix)
        assert result.status == "failed", (result, data[:200])
        url = f"oss://{self.cloud.bucket}/{key}"
        for text in (url, *mentions):
            assert text in result.message, (text, result.message)
        job = self.api.world.store.get_job(result.job_id)
        assert job is not None and job.status.value == "failed" and job.reason == result.message
        stem = key[len("incoming/") :].rsplit(".", 1)[0]
        error = json.loads(self.api.world.object(f"reports/{stem}.{result.job_id[:12]}.error.json"))
        assert error["problem"] == "file" and error["error"] == result.message and error["fix"]
        return error

    @staticmethod
    def refused_by_the_cli(name: str, data: bytes, mentions: tuple[str, ...], suffix: str) -> None:
        from chatapp_mass.entry import cli

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}{suffix}"
            path.write_bytes(data)
            out, err = io.StringIO(), io.StringIO()
            code = cli.main(["check", str(path), *SEND_FLAGS], out=out, err=err)
        assert code == 2 and "nothing sent" in err.getvalue() and out.getvalue() == "", (code, err.getvalue())
        for text in (str(path), *mentions):
            assert text in err.getvalue(), (text, err.getvalue())

    def accepted_file(self, name: str, data: bytes, suffix: str = ".csv") -> list[dict[str, str]]:
        """The upload is a job sent in full; returns its report's rows."""
        result, key = self.upload_and_ingest(name, data, suffix)
        assert result.status == "planned", result
        self.api.world.run_senders()
        job = self.api.world.store.get_job(result.job_id)
        assert job is not None and job.status.value == "completed", job
        stem = key[len("incoming/") :].rsplit(".", 1)[0]
        text = self.api.world.object(f"reports/{stem}.{result.job_id[:12]}.report.csv").decode()
        return list(csv.DictReader(io.StringIO(text)))

    # OSS events, raw
    def ingest_raw(self, raw: bytes) -> Any:
        results = _ingest_raw(self.api, raw)
        self.created.extend(r.job_id for r in results if r.job_id)
        return results

    # HTTP
    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        response = self.api.call(method, path, body, headers=headers, query=query, auth=auth)
        assert response["statusCode"] < 500, response
        try:
            return response["statusCode"], json.loads(response["body"])
        except ValueError:
            return response["statusCode"], response["body"]

    def refused(self, status: int, body: Any, expected: int | tuple[int, ...], code: str, names: str) -> None:
        """A JSON refusal: the status, the error code, and the field/parameter named in ``field`` and in
        the message."""
        allowed = expected if isinstance(expected, tuple) else (expected,)
        assert status in allowed, (status, body)
        error = body["error"]
        assert error["code"] == code, error
        assert error.get("field") == names or names in error["message"], error
        assert names.lower() in (error.get("field", "") + " " + error["message"]).lower(), error

    def submit(self, body: Any, **kwargs: Any) -> tuple[int, Any]:
        return self.http("POST", "/jobs", body, **kwargs)

    # the timer
    def timer(self, raw: bytes | str) -> dict[str, Any]:
        world = self.api.world
        return Timer(world.store, world.oss, world.invoker, world.settings).handle(raw)

    # the healthy job after each case
    def healthy_job(self) -> str:
        self.healthy_seq += 1
        base = 8613900000000 + self.healthy_seq * 100
        items = [{"To": str(base + i), "TemplateParams": {"name": f"H{i}"}} for i in range(5)]
        status, body = self.submit({"options": OPTIONS, "recipients": items})
        assert status == 202, body
        self.api.world.run_senders()
        job = self.api.world.store.get_job(body["job_id"])
        assert job is not None and job.status.value == "completed" and job.valid == 5, job
        sent = {m.to for m in self.cloud.cams.backend.received}
        assert {str(base + i) for i in range(5)} <= sent
        return str(body["job_id"])


def snapshot(api: Api) -> dict[str, tuple[Any, ...]]:
    return {
        j.job_id: (j.status, j.valid, j.invalid, j.duplicate, j.batches, j.updated_at, j.reason)
        for j in api.world.store.list_jobs(200)
    }


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        local.tablestore.backend.max_tables = 1024
        yield local


@pytest.fixture(scope="module")
def harness(cloud: LocalCloud) -> Iterator[Harness]:
    api = Api(cloud)
    harness = Harness(api, cloud)
    harness.first_job_id = harness.healthy_job()  # the job finished before the corpus runs
    yield harness


def _ingest_raw(api: Api, raw: bytes) -> Any:
    from chatapp_mass.services.ingest import Ingest

    world = api.world
    return Ingest(world.store, world.oss, world.invoker, world.settings).handle(raw)


@pytest.fixture(scope="module")
def first_job(harness: Harness) -> tuple[str, tuple[Any, ...], bytes]:
    job_id = harness.first_job_id
    state = snapshot(harness.api)[job_id]
    return job_id, state, harness.api.call("GET", f"/jobs/{job_id}/report")["body"].encode()


def _params() -> list[Any]:
    """The cases, an expected failure marked (run all the same: it passes once its feature lands)."""
    return [
        pytest.param(c, id=f"{c.kind}-{c.name}", marks=[pytest.mark.xfail(reason=c.xfail)] if c.xfail else [])
        for c in CASES
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "item" in metafunc.fixturenames:  # after the module ran: every case is registered by then
        metafunc.parametrize("item", _params())


def test_bad_input(item: Case, harness: Harness, first_job: tuple[str, tuple[Any, ...], bytes]) -> None:
    api, cams = harness.api, harness.cloud.cams.backend
    api.world.run_senders()  # whatever an earlier failed case left queued is not this case's
    before = snapshot(api)
    attempts = len(cams.attempts)
    harness.created.clear()
    item.run(harness)
    after = snapshot(api)
    changed = [j for j, state in before.items() if after.get(j) != state]
    assert changed == [], f"{item.name} changed other jobs: {changed}"
    if not item.accepted:
        new = set(after) - set(before)
        assert new <= set(harness.created), f"{item.name} made jobs it did not report: {new}"
        assert api.world.invoker.queue == [], f"{item.name} queued work: {api.world.invoker.queue}"
        assert len(cams.attempts) == attempts, f"{item.name} called CAMS"
    job_id, state, report = first_job
    assert snapshot(api)[job_id] == state
    assert api.call("GET", f"/jobs/{job_id}/report")["body"].encode() == report
    harness.healthy_job()


def test_the_corpus_is_big_enough() -> None:
    counts = corpus_counts()
    print("corpus cases by kind:", counts, "total", sum(counts.values()))
    assert sum(counts.values()) >= 50 and set(counts) == {
        "csv",
        "xlsx",
        "oss_event",
        "http_body",
        "header",
        "query",
        "timer",
    }, counts


# --- what the corpus found, shown on its own ----------------------------------------------------------------
def test_a_bad_timer_payload_does_not_stop_the_sweep(harness: Harness) -> None:
    """The firing still starts the jobs that are due (it raised before, so a typo in one trigger's payload
    held every scheduled job back, firing after firing)."""
    world = harness.api.world
    at = time.time() + 60
    status, body = harness.submit(
        {"options": OPTIONS, "recipients": [{"To": "8613700000001", "TemplateParams": {"name": "S"}}]},
        query={"scheduledAt": datetime.fromtimestamp(at, timezone.utc).isoformat()},
    )
    assert (status, body["status"]) == (202, "scheduled"), body  # the query's schedule, for a JSON body
    timer = Timer(world.store, world.oss, world.invoker, world.settings, clock=lambda: at + 1)
    result = timer.handle(timer_event("payload_not_json.json"))
    assert result["recurring"]["job_id"] is None and body["job_id"] in result["started"], result
    world.run_senders()
    job = world.store.get_job(body["job_id"])
    assert job is not None and job.status.value == "completed"


# --- recipient files (CSV, XLSX) through an upload ------------------------------------------------------
def data(name: str) -> bytes:
    return (CORPUS / "files" / name).read_bytes()


def _file_refused(name: str, *mentions: str) -> None:
    @case("csv", name.rsplit(".", 1)[0])
    def run(h: Harness) -> None:
        h.refused_file(name.rsplit(".", 1)[0], data(name), *mentions)


for _name, _mentions in {
    "bom_utf16le.csv": ("line 1", "UTF-16"),
    "bom_utf16be.csv": ("line 1", "UTF-16"),
    "utf16le_no_bom.csv": ("line 1", "NUL"),
    "bom_utf32le.csv": ("line 1",),
    "nul_in_header.csv": ("line 1", "NUL"),
    "nul_in_row.csv": ("line 3", "NUL"),
    "crlf_cr_mix.csv": ("line 2", "carriage return"),
    "cr_only.csv": ("line 1", "carriage return"),
    "no_header.csv": ("line 1",),
    "duplicate_headers.csv": ("line 1", "name"),
    "duplicate_recipient_columns.csv": ("line 1",),
    "latin1.csv": ("line 2", "UTF-8"),
    "cp1252_header.csv": ("line 1", "UTF-8"),
    "empty.csv": ("line 1", "empty"),
    "blank_first_line.csv": ("line 1", "blank"),
    "only_whitespace.csv": ("line 1",),
    "html_not_csv.csv": ("line 1",),
    "pdf_not_csv.csv": ("line 1",),
    "old_xls.csv": ("Excel 97-2003",),
    "bom_utf8_twice.csv": ("line 1",),
}.items():
    _file_refused(_name, *_mentions)


@case("csv", "bom_utf8", accepted=True)
def _bom_utf8(h: Harness) -> None:
    rows = h.accepted_file("bom", data("bom_utf8.csv"))
    assert [(r["to"], r["status"]) for r in rows] == [("8613800000001", "sent")]


@case("csv", "crlf", accepted=True)
def _crlf(h: Harness) -> None:
    assert [r["status"] for r in h.accepted_file("crlf", data("crlf.csv"))] == ["sent", "sent"]


@case("csv", "header_only", accepted=True)
def _header_only(h: Harness) -> None:
    assert h.accepted_file("header-only", data("header_only.csv")) == []


@case("csv", "quote_unclosed", accepted=True)
def _quote_unclosed(h: Harness) -> None:
    """An unclosed quote swallows the rest of the file into one cell: that record is refused, by line (it
    was sent, with line 3's recipient lost inside a template value)."""
    rows = h.accepted_file("unclosed", data("quote_unclosed.csv"))
    assert [(r["line"], r["status"], r["code"]) for r in rows] == [("2", "invalid", "UnclosedQuote")], rows
    assert "line 2" in rows[0]["message"] and "never closed" in rows[0]["message"]


@case("csv", "quote_in_unquoted_cell", accepted=True)
def _stray_quote(h: Harness) -> None:
    rows = h.accepted_file("stray-quote", data("quote_in_unquoted_cell.csv"))
    assert [r["status"] for r in rows] == ["sent"]


@case("csv", "blank_header_name")
def _blank_header(h: Harness) -> None:
    h.refused_file("blank-header", data("blank_header_name.csv"), "line 1")


@case("csv", "ragged_rows", accepted=True)
def _ragged(h: Harness) -> None:
    rows = h.accepted_file("ragged", data("ragged_rows.csv"))
    by_line = {r["line"]: r for r in rows}
    assert by_line["4"]["status"] == "sent"
    assert {by_line["2"]["status"], by_line["3"]["status"]} == {"invalid"}, rows
    assert by_line["2"]["code"] == "ColumnCount" and "header has 2" in by_line["2"]["message"]


@case("csv", "semicolons", accepted=True)
def _semicolons(h: Harness) -> None:
    assert [r["status"] for r in h.accepted_file("semicolons", data("semicolons.csv"))] == ["sent"]


@case("csv", "bom_mid_file", accepted=True)
def _bom_mid(h: Harness) -> None:
    rows = h.accepted_file("bom-mid", data("bom_mid_file.csv"))
    assert rows[1]["status"] == "sent" and rows[0]["line"] == "2", rows


@case("csv", "overlong_number", accepted=True)
def _overlong(h: Harness) -> None:
    rows = h.accepted_file("overlong", data("overlong_number.csv"))
    assert (
        rows[0]["status"] == "invalid" and rows[0]["code"] == "InvalidNumber" and rows[1]["status"] == "sent"
    )


@case("csv", "formula_injection", accepted=True)
def _formula(h: Harness) -> None:
    """Cells that a spreadsheet would run as formulas come back in the report defused (a leading ')."""
    rows = h.accepted_file("formula", data("formula_injection.csv"))
    refused = [r for r in rows if r["status"] == "invalid"]
    assert len(refused) == 5, rows
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "@", "+", "-", "\t", "\r")), row
    assert {r["to"] for r in refused} >= {"'=cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"}


@case("csv", "line_of_10_MB")
def _ten_mb_line(h: Harness) -> None:
    """A 10 MB line (one cell, no line end) is refused as a row, by line; the job is not sunk by it."""
    result, _ = h.upload_and_ingest("10mb", b"to,name\n8613800000001," + b"A" * (10 * 1024 * 1024))
    assert result.status in ("planned", "failed"), result
    if result.status == "failed":
        assert "line 2" in result.message, result.message
        return
    h.api.world.run_senders()
    rows = list(csv.DictReader(io.StringIO(h.api.call("GET", f"/jobs/{result.job_id}/report")["body"])))
    assert rows[0]["line"] == "2" and rows[0]["status"] == "invalid" and rows[0]["code"] == "CellTooLarge"
    assert len(rows[0]["message"]) < 500


@case("csv", "header_of_10_MB")
def _ten_mb_header(h: Harness) -> None:
    h.refused_file("10mb-header", b"to," + b"n" * (10 * 1024 * 1024) + b"\n8613800000001,Ana\n", "line 1")


def workbook(rows: list[list[Any]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rezip(source: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """A copy of a ZIP with each member changed (None: left out)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as old, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            content = change(info.filename, old.read(info))
            if content is not None:
                new.writestr(info.filename, content)
    return out.getvalue()


@case("xlsx", "xlsx_with_no_sheets")
def _xlsx_no_sheets(h: Harness) -> None:
    def drop_sheets(name: str, content: bytes) -> bytes | None:
        if name.startswith("xl/worksheets/"):
            return None
        if name == "xl/workbook.xml":
            text = content.decode()
            start, end = text.index("<sheets>"), text.index("</sheets>") + len("</sheets>")
            return (text[:start] + "<sheets/>" + text[end:]).encode()
        return content

    book = rezip(workbook([["to", "name"], ["8613800000001", "Ana"]]), drop_sheets)
    h.refused_file("no-sheets", book, "workbook", suffix=".xlsx")


@case("xlsx", "xlsx_encrypted")
def _xlsx_encrypted(h: Harness) -> None:
    """A password-protected .xlsx is an OLE2 compound file holding an EncryptedPackage stream."""
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 16 + b"\x3e\x00\x03\x00\xfe\xff\x09\x00"
    ole += b"\x00" * (512 - len(ole)) + "EncryptedPackage".encode("utf-16-le") + b"\x00" * 1024
    error = h.refused_file("encrypted", ole, "password-protected", suffix=".xlsx")
    assert "without a password" in error["error"]


@case("xlsx", "docx_named_xlsx")
def _docx(h: Harness) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as docx:
        docx.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        docx.writestr("word/document.xml", "<w:document/>")
    h.refused_file("docx", out.getvalue(), "not a CSV text file", suffix=".xlsx")


@case("xlsx", "xlsx_cut_in_half")
def _xlsx_truncated(h: Harness) -> None:
    book = workbook([["to", "name"], *[[str(8613800000000 + i), "N"] for i in range(200)]])
    h.refused_file("truncated", book[: len(book) // 2], "workbook cannot be read", suffix=".xlsx")


@case("xlsx", "xlsx_sheet_not_xml")
def _xlsx_bad_xml(h: Harness) -> None:
    def corrupt(name: str, content: bytes) -> bytes:
        return b"<worksheet><sheetData><row>" if name == "xl/worksheets/sheet1.xml" else content

    book = rezip(workbook([["to", "name"], ["8613800000001", "Ana"]]), corrupt)
    h.refused_file("bad-xml", book, "workbook cannot be read", suffix=".xlsx")


@case("xlsx", "xlsx_empty_sheet")
def _xlsx_empty(h: Harness) -> None:
    h.refused_file("empty-sheet", workbook([]), "is empty", suffix=".xlsx")


@case("xlsx", "xlsx_zip_bomb")
def _xlsx_bomb(h: Harness) -> None:
    """A workbook whose sheet expands 1,000-fold: one 64 MiB cell (openpyxl would build it in memory)."""
    cell = b'<c r="B2" t="inlineStr"><is><t>' + b"A" * (64 * 1024 * 1024) + b"</t></is></c>"

    def inflate(name: str, content: bytes) -> bytes:
        if name != "xl/worksheets/sheet1.xml":
            return content
        return content.replace(
            b"</sheetData>", b'<row r="2"><c r="A2"><v>8613800000001</v></c>' + cell + b"</row></sheetData>"
        )

    book = rezip(workbook([["to", "name"]]), inflate)
    assert len(book) < 1024 * 1024
    h.refused_file("bomb", book, "expands", "xl/worksheets/sheet1.xml", suffix=".xlsx")


# --- OSS trigger events, raw ----------------------------------------------------------------------------
def oss_event(name: str, h: Harness) -> bytes:
    text = (CORPUS / "oss_events" / name).read_text()
    return text.replace("${BUCKET}", h.cloud.bucket).encode()


def _event_refused(name: str, *mentions: str) -> None:
    @case("oss_event", name.rsplit(".", 1)[0])
    def run(h: Harness) -> None:
        with pytest.raises(EventError) as error:
            h.ingest_raw(oss_event(name, h))
        for text in mentions:
            assert text in str(error.value), str(error.value)


for _name, _mentions in {
    "not_json.txt": ("not an FC3 OSS trigger event",),
    "no_events.json": ("events",),
    "events_not_a_list.json": ("events",),
    "record_without_oss.json": ("oss",),
    "record_without_key.json": ("key",),
    "record_without_etag.json": ("eTag",),
    "event_name_a_number.json": ("eventName",),
    "size_not_a_number.json": ("size",),
}.items():
    _event_refused(_name, *_mentions)


def _event_skipped(name: str, *mentions: str) -> None:
    @case("oss_event", name.rsplit(".", 1)[0])
    def run(h: Harness) -> None:
        results = h.ingest_raw(oss_event(name, h))
        assert [r.status for r in results] == ["skipped"], results
        for text in mentions:
            assert text in results[0].message, results[0].message

    return None


for _name, _mentions in {
    "object_removed.json": ("not an upload",),
    "outside_incoming.json": ("not an upload",),
    "wrong_bucket.json": ("someone-elses-bucket", "CHATAPP_BUCKET"),
    "key_with_dotdot.json": ("..",),
    "key_url_encoded_dotdot.json": ("..",),
}.items():
    _event_skipped(_name, *_mentions)


@case("oss_event", "key_of_a_missing_object")
def _missing_object(h: Harness) -> None:
    [result] = h.ingest_raw(oss_event("missing_object.json", h))
    assert result.status == "failed" and "NoSuchKey" in result.message
    assert f"oss://{h.cloud.bucket}/incoming/never-uploaded.csv" in result.message


@case("oss_event", "key_url_encoded_plus", accepted=True)
def _encoded_plus(h: Harness) -> None:
    """``incoming/march list.csv`` named ``incoming/march+list.csv`` in the event: the decoded key is read."""
    key = f"incoming/march list {secrets.token_hex(2)}.csv"
    event = h.api.world.upload(key, b"to,name\n8613800000007,Ana\n")
    event["events"][0]["oss"]["object"]["key"] = key.replace(" ", "+")
    [result] = h.ingest_raw(json.dumps(event).encode())
    assert result.status == "planned" and result.key == key, result
    h.api.world.run_senders()


@case("oss_event", "key_percent_not_an_escape")
def _percent(h: Harness) -> None:
    [result] = h.ingest_raw(oss_event("key_percent.json", h))
    assert result.status == "failed" and "incoming/100%-off.csv" in result.message, result


@case("oss_event", "key_with_a_nul")
def _nul_key(h: Harness) -> None:
    [result] = h.ingest_raw(oss_event("key_with_nul.json", h))
    assert result.status in ("failed", "skipped") and "incoming/list" in result.message, result


@case("oss_event", "deeply_nested")
def _deep_event(h: Harness) -> None:
    with pytest.raises(EventError) as error:
        h.ingest_raw(b'{"events": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert "not an FC3 OSS trigger event" in str(error.value)


@case("oss_event", "a_json_array")
def _array_event(h: Harness) -> None:
    with pytest.raises(EventError) as error:
        h.ingest_raw(json.dumps(json.loads(oss_event("missing_object.json", h))["events"]).encode())
    assert "not an FC3 OSS trigger event" in str(error.value)


@case("oss_event", "ten_thousand_records")
def _huge_events(h: Harness) -> None:
    record = json.loads(oss_event("object_removed.json", h))["events"][0]
    record["eventName"] = "ObjectCreated:PutObject"
    raw = json.dumps({"events": [record] * 10_000}).encode()
    with pytest.raises(EventError) as error:
        h.ingest_raw(raw)
    assert "10000 records" in str(error.value) and "events holds" in str(error.value)


# --- HTTP bodies (POST /jobs) ---------------------------------------------------------------------------
def _body_refused(
    name: str, body: Any, status: int, code: str, names: str, headers: dict[str, str] | None = None
) -> None:
    @case("http_body", name)
    def run(h: Harness) -> None:
        h.refused(*h.submit(body, headers=headers), status, code, names)


RECIPIENT = {"To": "8613800000001", "TemplateParams": {"name": "Ana"}}
for _args in [
    ("not_json", "this is not JSON", 400, "invalid_json", "body"),
    ("json_array", json.dumps([OPTIONS]), 400, "invalid_json", "body"),
    ("json_string", '"recipients"', 400, "invalid_json", "body"),
    ("json_null", "null", 400, "invalid_json", "body"),
    ("truncated_json", '{"options": {"ChannelType": "whats', 400, "invalid_json", "body"),
    ("not_utf8", b'{"options": {"Language": "\xff\xfe"}}', 400, "invalid_json", "body"),
    ("deep_nesting", "[" * 100_000 + "]" * 100_000, 400, "invalid_json", "body"),
    (
        "deep_nesting_in_options",
        '{"options": ' + '{"a":' * 5000 + "1" + "}" * 5001,
        400,
        "invalid_json",
        "body",
    ),
    ("huge_integer", '{"options": {"BatchSize": ' + "9" * 5000 + "}}", 400, "invalid_json", "body"),
    (
        "huge_float_as_number",
        '{"options": ' + json.dumps(OPTIONS) + ', "recipients": [{"To": 1e999}]}',
        400,
        "invalid_field",
        "recipients.0.To",
    ),
    (
        "recipients_a_string",
        {"options": OPTIONS, "recipients": "8613800000001"},
        400,
        "invalid_field",
        "recipients",
    ),
    (
        "to_a_number",
        {"options": OPTIONS, "recipients": [{"To": 8613800000001}]},
        400,
        "invalid_field",
        "recipients.0.To",
    ),
    (
        "template_param_a_number",
        {"options": OPTIONS, "recipients": [{"To": "8613800000001", "TemplateParams": {"name": 5}}]},
        400,
        "invalid_field",
        "recipients.0.TemplateParams.name",
    ),
    (
        "unknown_top_field",
        {"options": OPTIONS, "recipients": [RECIPIENT], "sendNow": True},
        400,
        "invalid_field",
        "sendNow",
    ),
    (
        "unknown_recipient_field",
        {"options": OPTIONS, "recipients": [{**RECIPIENT, "Name": "x"}]},
        400,
        "invalid_field",
        "recipients.0.Name",
    ),
    (
        "unknown_option",
        {"options": {**OPTIONS, "ChanelType": "x"}, "recipients": [RECIPIENT]},
        400,
        "invalid_options",
        "ChanelType",
    ),
    ("options_a_list", {"options": ["whatsapp"], "recipients": [RECIPIENT]}, 400, "invalid_field", "options"),
    (
        "both_sources",
        {"options": OPTIONS, "recipients": [RECIPIENT], "source": "incoming/x.csv"},
        400,
        "invalid_field",
        "recipients",
    ),
    ("no_source", {"options": OPTIONS}, 400, "invalid_field", "recipients"),
    ("source_malformed_url", {"options": OPTIONS, "source": "oss://"}, 400, "invalid_field", "source"),
    ("source_dotdot", {"options": OPTIONS, "source": "../../etc/passwd"}, 400, "source_not_found", "source"),
    (
        "scheduled_at_garbage",
        {"options": OPTIONS, "recipients": [RECIPIENT], "scheduledAt": "tomorrow"},
        400,
        "invalid_schedule",
        "scheduledAt",
    ),
    ("to_empty", {"options": OPTIONS, "recipients": [{"To": ""}]}, 400, "invalid_field", "recipients.0.To"),
]:
    _body_refused(*_args)


@case("http_body", "a_hundred_thousand_recipients_inline")
def _huge_inline(h: Harness) -> None:
    items = [{"To": str(8613000000000 + i)} for i in range(100_000)]
    status, body = h.submit({"options": OPTIONS, "recipients": items})
    h.refused(status, body, 413, "body_too_large", "body")
    assert "source" in body["error"]["message"]  # what to do instead


@case("http_body", "base64_that_is_not")
def _bad_base64(h: Harness) -> None:
    event = {
        "version": "v1",
        "rawPath": "/jobs",
        "body": "***not base64***",
        "isBase64Encoded": True,
        "headers": {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        "queryParameters": {},
        "requestContext": {"http": {"method": "POST", "path": "/jobs"}, "requestId": "r"},
    }
    from chatapp_mass.entry.console import serve

    response = serve(h.api.api, HttpEvent.model_validate(event))
    h.refused(response["statusCode"], json.loads(response["body"]), 400, "invalid_body", "body")


@case("http_body", "operator_body_wrong_type")
def _operator_body(h: Harness) -> None:
    job_id = next(iter(snapshot(h.api)))
    h.refused(
        *h.http("POST", f"/jobs/{job_id}/reconcile", {"reconcile": "maybe"}),
        400,
        "invalid_field",
        "reconcile",
    )


# --- headers ----------------------------------------------------------------------------------------------
VALID = {"options": OPTIONS, "recipients": [RECIPIENT]}


def _header_refused(
    name: str,
    headers: dict[str, str],
    status: int | tuple[int, ...],
    code: str | tuple[str, ...],
    names: str,
    *,
    auth: bool = True,
) -> None:
    @case("header", name)
    def run(h: Harness) -> None:
        result_status, body = h.submit(VALID, headers=headers, auth=auth)
        codes = code if isinstance(code, tuple) else (code,)
        assert body["error"]["code"] in codes, body
        h.refused(result_status, body, status, body["error"]["code"], names)


for _args in [
    ("content_type_xml", {"Content-Type": "application/xml"}, 415, "unsupported_media_type", "Content-Type"),
    (
        "content_type_form",
        {"Content-Type": "application/x-www-form-urlencoded"},
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    ("idempotency_key_oversized", {"Idempotency-Key": "k" * 300}, 400, "invalid_header", "Idempotency-Key"),
    ("no_authorization", {}, 401, "unauthenticated", "Authorization"),
    ("authorization_basic", {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthenticated", "Authorization"),
    ("authorization_bearer_empty", {"Authorization": "Bearer "}, 401, "unauthenticated", "Authorization"),
    # FC joins a repeated header's values with commas (ALIBABA-FACTS §1)
    (
        "two_authorization_headers",
        {"Authorization": f"Bearer {TOKEN}, Bearer {TOKEN}"},
        (400, 401, 403),
        ("forbidden", "invalid_token", "unauthenticated", "invalid_header"),
        "Authorization",
    ),
    (
        "authorization_non_ascii",
        {"Authorization": "Bearer tökén-ünïcödé"},
        (401, 403),
        ("forbidden", "invalid_token", "unauthenticated"),
        "Authorization",
    ),
]:
    _header_refused(*_args, auth=not _args[0].startswith(("no_", "authorization_", "two_")))


@case("header", "content_type_csv_with_a_json_body")
def _csv_json(h: Harness) -> None:
    status, body = h.submit(VALID, headers={"Content-Type": "text/csv"}, query=OPTIONS)
    h.refused(status, body, 400, "invalid_csv", "line 1")
    assert "no recipient column" in body["error"]["message"]


@case("header", "idempotency_key_non_ascii_with_a_bad_body")
def _non_ascii_key(h: Harness) -> None:
    status, body = h.submit({"options": OPTIONS}, headers={"Idempotency-Key": "ключ-🔑"})
    h.refused(status, body, 400, "invalid_field", "recipients")


# --- query strings ----------------------------------------------------------------------------------------
def _query_refused(
    name: str, method: str, query: dict[str, str], status: int, code: str, names: str, *, xfail: str = ""
) -> None:
    @case("query", name, xfail=xfail)
    def run(h: Harness) -> None:
        body = VALID if method == "POST" else None
        h.refused(*h.http(method, "/jobs", body, query=query), status, code, names)


for _args in [
    ("limit_negative", "GET", {"limit": "-1"}, 400, "invalid_parameter", "limit"),
    ("limit_not_a_number", "GET", {"limit": "abc"}, 400, "invalid_parameter", "limit"),
    ("limit_zero", "GET", {"limit": "0"}, 400, "invalid_parameter", "limit"),
    ("limit_too_big", "GET", {"limit": "201"}, 400, "invalid_parameter", "limit"),
    ("limit_float", "GET", {"limit": "1e3"}, 400, "invalid_parameter", "limit"),
    ("limit_two_values", "GET", {"limit": "1,2"}, 400, "invalid_parameter", "limit"),
    ("limit_superscript_digit", "GET", {"limit": "²"}, 400, "invalid_parameter", "limit"),
    ("preview_maybe", "POST", {"preview": "maybe"}, 400, "invalid_parameter", "preview"),
    ("force_maybe", "POST", {"force": "sometimes"}, 400, "invalid_parameter", "force"),
    (
        "time_zone_unknown",
        "POST",
        {"scheduledAt": "2030-01-01T09:00:00", "timeZone": "Mars/Olympus"},
        400,
        "invalid_schedule",
        "timeZone",
    ),
    (
        "scheduled_in_the_past",
        "POST",
        {"scheduledAt": "2001-01-01T00:00:00Z"},
        400,
        "invalid_schedule",
        "scheduledAt",
    ),
    ("unknown_option_in_query", "POST", {"channelTipe": "whatsapp"}, 400, "invalid_options", "channelTipe"),
]:
    _query_refused(*_args)


@case("query", "channel_type_unknown_for_a_csv_body")
def _channel_query(h: Harness) -> None:
    query = {**OPTIONS, "ChannelType": "pigeon"}
    status, body = h.http(
        "POST", "/jobs", b"to,name\n8613800000001,Ana\n", headers={"Content-Type": "text/csv"}, query=query
    )
    h.refused(status, body, 400, "invalid_options", "ChannelType")


_query_refused(
    "cursor_garbage",
    "GET",
    {"cursor": "%%garbage%%"},
    400,
    "invalid_parameter",
    "cursor",
)


@case("query", "sheet_missing_in_a_workbook_body")
def _sheet(h: Harness) -> None:
    book = workbook([["to", "name"], ["8613800000001", "Ana"]])
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    status, body = h.http(
        "POST", "/jobs", book, headers={"Content-Type": xlsx}, query={**OPTIONS, "sheet": "Nope"}
    )
    h.refused(status, body, 400, "invalid_csv", "Nope")
    assert "Sheet" in body["error"]["message"]  # the sheets found


# --- timer events ---------------------------------------------------------------------------------------
def timer_event(name: str) -> bytes:
    return (CORPUS / "timer" / name).read_bytes()


def _timer_refused(name: str, *mentions: str) -> None:
    @case("timer", name.rsplit(".", 1)[0])
    def run(h: Harness) -> None:
        with pytest.raises(EventError) as error:
            h.timer(timer_event(name))
        for text in mentions:
            assert text in str(error.value), str(error.value)


for _name, _mentions in {
    "not_json.txt": ("not an FC3 timer event",),
    "trigger_time_missing.json": ("triggerTime",),
    "trigger_time_a_number.json": ("triggerTime",),
    "payload_an_object.json": ("payload",),
}.items():
    _timer_refused(_name, *_mentions)


@case("timer", "deeply_nested")
def _deep_timer(h: Harness) -> None:
    with pytest.raises(EventError) as error:
        h.timer('{"triggerTime": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "not an FC3 timer event" in str(error.value) and "recursion" in str(error.value)


@case("timer", "payload_deeply_nested")
def _deep_payload(h: Harness) -> None:
    payload = '{"recurring": {"source": "incoming/x.csv", "options": ' + '{"a":' * 10_000 + "1" + "}" * 10_002
    result = h.timer(
        json.dumps({"triggerTime": "2030-03-17T08:00:00Z", "triggerName": "api-timer", "payload": payload})
    )
    assert result["recurring"]["job_id"] is None and "payload" in result["recurring"]["error"], result


def _timer_payload_refused(name: str, *mentions: str) -> None:
    """A bad recurring payload is refused in the result (and logged) while the rest of the firing — starting
    scheduled jobs, sweeping idle ones — goes on: one trigger's typo must not stall every job."""

    @case("timer", name.rsplit(".", 1)[0])
    def run(h: Harness) -> None:
        result = h.timer(timer_event(name))
        recurring = result["recurring"]
        assert recurring["job_id"] is None, result
        for text in ("api-timer", *mentions):
            assert text in recurring["error"], recurring


for _name, _mentions in {
    "payload_not_json.json": ("payload",),
    "payload_a_list.json": ("payload",),
    "payload_wrong_shape.json": ("recurring",),
    "payload_unknown_field.json": ("recurrring",),
    "payload_empty_source.json": ("recurring.source",),
    "payload_malformed_oss_url.json": ("source", "oss://"),
    "payload_bad_option.json": ("ChannelType",),
}.items():
    _timer_payload_refused(_name, *_mentions)
