"""HTTP in, reply out: authenticate, decode protobuf + PlainBuffer, call the backend, encode and sign the reply.

Longer than 500 lines: one decoder and encoder per Tablestore operation, in the SDK's protobuf and plain-
buffer formats.

The wire protocol, as ``tablestore`` 6.4.8 speaks it (``protocol.py``, ``auth.py``, ``connection.py``):

- ``POST /<ApiName>``; the body is the API's protobuf request (``tablestore.protobuf.table_store_pb2``), rows and
  primary keys inside it are PlainBuffer (:mod:`.plainbuffer`).
- Request headers: ``x-ots-date`` (``%Y-%m-%dT%H:%M:%S.000Z``), ``x-ots-apiversion`` (2015-12-31),
  ``x-ots-accesskeyid``, ``x-ots-instancename``, ``x-ots-contentmd5`` (base64 MD5 of the body), ``x-ots-ststoken``
  (STS), and the signature over every ``x-ots-*`` header sent::

      StringToSign = "/<ApiName>\\nPOST\\n\\n" + "\\n".join(sorted("name:value.strip()")) + "\\n"
      V2: x-ots-signature   = base64(HMAC-SHA1(secret, StringToSign))
      V4: x-ots-signaturev4 = base64(HMAC-SHA256(key, StringToSign + "ots")), with x-ots-signdate (%Y%m%d) and
          x-ots-signregion; key = base64(HMAC-SHA256 chain of "aliyun_v4"+secret over date, region, "ots",
          "aliyun_v4_request")

- Reply headers, which the SDK checks (``_check_headers``/``_check_authorization``): ``x-ots-contentmd5``,
  ``x-ots-requestid``, ``x-ots-date`` (within 15 minutes of the client's clock), ``x-ots-contenttype`` and, for an
  authenticated request, ``authorization: OTS <AccessKeyId>:<base64 HMAC-SHA1(key, sorted x-ots-* lines + "\\n" +
  "/<ApiName>")>`` (key: the secret, or the V4 key). Errors: non-2xx status, body ``Error{code, message}``.

No business rules here: those live in :mod:`.models`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, EncodeError

from alibaba_localcloud import ram
from alibaba_localcloud._http import HttpRequest, is_loopback, json_object

from . import exceptions as exc
from . import models as m
from .plainbuffer import (
    PlainBufferError,
    PlainRow,
    Value,
    decode_row,
    encode_primary_key,
    encode_row,
    encode_rows,
    parse_value_bytes,
)


def _quietly_import_sdk_protobuf() -> tuple[Any, Any]:
    """The SDK's protobuf modules import the whole SDK, which logs a warning when its optional native codecs are
    absent; the emulator uses neither codec, so that notice is muted while importing (and only then)."""
    sdk_logger = logging.getLogger("tablestore")
    previous = sdk_logger.level
    sdk_logger.setLevel(logging.ERROR)
    try:
        import tablestore.protobuf.table_store_filter_pb2 as filter_module
        import tablestore.protobuf.table_store_pb2 as module
    finally:
        sdk_logger.setLevel(previous)
    return module, filter_module


pb, fpb = _quietly_import_sdk_protobuf()


log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_localtablestore/"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
REQUIRED_HEADERS = (
    "x-ots-date",
    "x-ots-apiversion",
    "x-ots-accesskeyid",
    "x-ots-instancename",
    "x-ots-contentmd5",
)
V4_PREFIX, V4_PRODUCT, V4_CONSTANT, V4_SALT = "aliyun_v4", "ots", "aliyun_v4_request", "ots"

_PK_TYPE_NAMES = {pb.INTEGER: "INTEGER", pb.STRING: "STRING", pb.BINARY: "BINARY", pb.PK_BOOLEAN: "BOOLEAN"}
_PK_TYPE_CODES = {"INTEGER": pb.INTEGER, "STRING": pb.STRING, "BINARY": pb.BINARY}
_DEFINED_TYPE_NAMES = {
    pb.DCT_INTEGER: "INTEGER",
    pb.DCT_DOUBLE: "DOUBLE",
    pb.DCT_BOOLEAN: "BOOLEAN",
    pb.DCT_STRING: "STRING",
    pb.DCT_BLOB: "BINARY",
}
_DEFINED_TYPE_CODES = {name: code for code, name in _DEFINED_TYPE_NAMES.items()}
_KINDS = {pb.PUT: "put", pb.UPDATE: "update", pb.DELETE: "delete"}


@dataclass
class Reply:
    """What the server sends: status, body, headers; or, for injected timeouts, a delay or a dropped line."""

    http_status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    delay: float = 0.0
    drop: bool = False
    close_connection: bool = False


@dataclass(frozen=True)
class _Auth:
    account: m.Account
    instance: str
    signing_key: bytes  # the secret (V2) or the derived key (V4): what the reply is signed with


@dataclass
class _Call:
    """A decoded request: the tables it names and the function that runs it (returns body, row errors)."""

    tables: list[str]
    run: Callable[[], tuple[bytes, int]]


def sign_v2(secret: str, text: str) -> str:
    return base64.b64encode(
        hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    ).decode()


def v4_signing_key(secret: str, sign_date: str, region: str) -> bytes:
    key = (V4_PREFIX + secret).encode("utf-8")
    for part in (sign_date, region, V4_PRODUCT, V4_CONSTANT):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(key)


def request_string_to_sign(api: str, headers: dict[str, str]) -> str:
    lines = sorted(
        f"{name}:{value.strip()}"
        for name, value in headers.items()
        if name.startswith("x-ots-") and name not in ("x-ots-signature", "x-ots-signaturev4")
    )
    return f"/{api}\nPOST\n\n" + "\n".join(lines) + "\n"


def response_signature(key: bytes, api: str, headers: Sequence[tuple[str, str]]) -> str:
    lines = sorted(
        f"{name.lower()}:{value.strip()}" for name, value in headers if name.lower().startswith("x-ots-")
    )
    text = "\n".join(lines) + "\n" + f"/{api}"
    return base64.b64encode(hmac.new(key, text.encode("utf-8"), hashlib.sha1).digest()).decode()


def _b64_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


class TablestoreResponse:
    """The Tablestore API endpoint (``POST /<ApiName>``)."""

    def __init__(self, backend: m.TablestoreBackend) -> None:
        self.backend = backend
        self._parsers: dict[str, Callable[[str, bytes], _Call]] = {
            "CreateTable": self._create_table,
            "DescribeTable": self._describe_table,
            "ListTable": self._list_table,
            "DeleteTable": self._delete_table,
            "UpdateTable": self._update_table,
            "GetRow": self._get_row,
            "PutRow": self._put_row,
            "UpdateRow": self._update_row,
            "DeleteRow": self._delete_row,
            "BatchGetRow": self._batch_get_row,
            "BatchWriteRow": self._batch_write_row,
            "GetRange": self._get_range,
        }

    # --- the request's life ---------------------------------------------------------------------------------
    def dispatch(self, request: HttpRequest) -> Reply:
        backend = self.backend
        api = request.path.lstrip("/")
        request_id = backend.new_request_id()
        access_key_id = request.header("x-ots-accesskeyid")
        auth: _Auth | None = None
        try:
            if request.method != "POST":
                raise exc.MethodNotAllowed()
            parser = self._parsers.get(api)
            if parser is None:
                # ASSUMPTION: APIs the emulator does not implement (search index, SQL, ...) answer like an
                # unknown operation
                raise exc.ParameterInvalid(f"Unsupported operation: {api}.")
            auth = self._authenticate(request, api)
            instance = auth.instance
            call = _guarded(lambda: parser(instance, request.body))
            if auth.account.policy is not None:
                self._authorize(auth, api, call.tables)
        except exc.TablestoreError as refused:
            backend.record(
                api=api,
                tables=[],
                http_status=refused.http_status,
                error_code=refused.code,
                error_message=refused.message,
                request_id=request_id,
                access_key_id=access_key_id,
            )
            return self._reply(api, request_id, auth, error=refused)

        fault = backend.take_fault(api)
        error: exc.TablestoreError | None = None
        body = b""
        applied = False
        row_errors = 0
        if fault is None or fault.apply:
            try:
                body, row_errors = _guarded(call.run)
                applied = True
            except exc.TablestoreError as error_:
                error = error_
        fault_name: str | None = None
        delay, drop = 0.0, False
        if fault is not None and fault.kind == "fail":
            fault_name, error = "fail", fault.error
        elif fault is not None:
            if fault.seconds is None:
                fault_name, drop = "drop", True
            else:
                fault_name, delay = "timeout", fault.seconds
                if not fault.apply:
                    error = exc.Timeout()
        status = error.http_status if error else 200
        backend.record(
            api=api,
            tables=call.tables,
            http_status=status,
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            request_id=request_id,
            access_key_id=access_key_id,
            fault=fault_name,
            applied=applied,
            row_errors=row_errors,
        )
        reply = self._reply(api, request_id, auth, error=error, body=body)
        reply.delay, reply.drop = delay, drop
        return reply

    def too_large(self, api: str) -> Reply:
        """The answer to a body over the request limit (the server drained it; nothing else is read)."""
        error = exc.RequestBodyTooLarge()
        request_id = self.backend.new_request_id()
        self.backend.record(
            api=api,
            tables=[],
            http_status=error.http_status,
            error_code=error.code,
            error_message=error.message,
            request_id=request_id,
            access_key_id=None,
        )
        reply = self._reply(api, request_id, None, error=error)
        reply.close_connection = True
        return reply

    def _reply(
        self,
        api: str,
        request_id: str,
        auth: _Auth | None,
        *,
        error: exc.TablestoreError | None = None,
        body: bytes = b"",
    ) -> Reply:
        if error is not None:
            proto = pb.Error(code=error.code, message=error.message)
            body, status = proto.SerializeToString(), error.http_status
        else:
            status = 200
        now = dt.datetime.fromtimestamp(self.backend.clock(), dt.timezone.utc)
        headers = [
            ("x-ots-contentmd5", _b64_md5(body)),
            ("x-ots-requestid", request_id),
            ("x-ots-date", now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"),
            ("x-ots-contenttype", "protocol buffer"),
        ]
        if auth is not None:  # only a caller that proved its key can check our signature
            signature = response_signature(auth.signing_key, api, headers)
            headers.append(("authorization", f"OTS {auth.account.access_key_id}:{signature}"))
        headers.append(("Content-Type", "application/x-protobuf"))
        return Reply(status, body, headers)

    # --- authentication ---------------------------------------------------------------------------------------
    def _authenticate(self, request: HttpRequest, api: str) -> _Auth:
        """ASSUMPTIONS: the order of the checks; the messages for a missing or wrong STS token and for an
        unsupported API version; a V4 sign date must be the server's UTC date, give or take a day."""
        headers: dict[str, str] = {}
        for name, value in request.headers:
            headers.setdefault(name.lower(), value)
        for name in REQUIRED_HEADERS:
            if name not in headers:
                raise exc.ParameterInvalid(f"Missing header: {name}.")
        v4 = "x-ots-signaturev4" in headers
        needed = ("x-ots-signdate", "x-ots-signregion") if v4 else ("x-ots-signature",)
        for name in needed:
            if name not in headers:
                raise exc.ParameterInvalid(f"Missing header: {name}.")
        date_text = headers["x-ots-date"]
        try:
            signed_at = dt.datetime.strptime(date_text, DATE_FORMAT).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise exc.ParameterInvalid(f"Invalid date format: {date_text}.") from None
        if headers["x-ots-apiversion"] != m.API_VERSION:
            raise exc.ParameterInvalid(f"Unsupported api version: {headers['x-ots-apiversion']}.")
        instance = headers["x-ots-instancename"]
        region = self.backend.instance_region(instance)
        if region is None:
            raise exc.AuthFailed("The instance is not found.")
        account = self.backend.account(headers["x-ots-accesskeyid"])
        if account is None:
            raise exc.AuthFailed("The AccessKeyID does not exist.")
        text = request_string_to_sign(api, headers)
        if v4:
            sign_date = headers["x-ots-signdate"]
            if not self._sign_date_ok(sign_date):
                raise exc.AuthFailed("Signature mismatch.")
            key = v4_signing_key(account.access_key_secret, sign_date, region)
            expected = base64.b64encode(
                hmac.new(key, (text + V4_SALT).encode("utf-8"), hashlib.sha256).digest()
            )
            given = headers["x-ots-signaturev4"].encode("utf-8")
        else:
            key = account.access_key_secret.encode("utf-8")
            expected = sign_v2(account.access_key_secret, text).encode("utf-8")
            given = headers["x-ots-signature"].encode("utf-8")
        if not hmac.compare_digest(expected, given):
            raise exc.AuthFailed("Signature mismatch.")
        token = headers.get("x-ots-ststoken")
        if account.security_token is not None:
            if not token:
                raise exc.AuthFailed("The security token is missing.")
            if not hmac.compare_digest(token.encode("utf-8"), account.security_token.encode("utf-8")):
                raise exc.AuthFailed("The security token you provided is invalid.")
        elif token:
            raise exc.AuthFailed("The security token you provided is invalid.")
        if _b64_md5(request.body) != headers["x-ots-contentmd5"]:
            raise exc.AuthFailed("Mismatch between MD5 value of request body and x-ots-contentmd5 in header.")
        skew = self.backend.max_clock_skew
        if skew is not None and abs(self.backend.clock() - signed_at.timestamp()) > skew:
            raise exc.AuthFailed(f"Mismatch between system time and x-ots-date: {date_text}.")
        return _Auth(account, instance, key)

    def _authorize(self, auth: _Auth, api: str, tables: list[str]) -> None:
        """A role's request, refused unless its policy allows ``ots:<API>`` on every table it names, per
        Tablestore's "Custom RAM policy" page (resource ``acs:ots:REGION:ACCOUNT:instance/INSTANCE/table/
        TABLE``, the action the API's name). ASSUMPTION (strict): an API that names no table (ListTable) is
        authorized on the instance, ``acs:ots:REGION:ACCOUNT:instance/INSTANCE``."""
        region = self.backend.instance_region(auth.instance) or ""
        owner = self.backend.account_id
        resources = [ram.ots_resource(region, owner, auth.instance, t) for t in dict.fromkeys(tables)] or [
            ram.ots_resource(region, owner, auth.instance)
        ]
        for resource in resources:
            if not auth.account.authorize(f"ots:{api}", resource).allowed:
                raise exc.NoPermissionAccess()

    def _sign_date_ok(self, sign_date: str) -> bool:
        try:
            day = dt.datetime.strptime(sign_date, "%Y%m%d").date()
        except ValueError:
            return False
        today = dt.datetime.fromtimestamp(self.backend.clock(), dt.timezone.utc).date()
        return abs((today - day).days) <= 1

    # --- table operations -------------------------------------------------------------------------------------
    def _create_table(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.CreateTableRequest, body)
        meta = req.table_meta
        primary_key = tuple(
            m.PrimaryKeySchema(
                column.name,
                _PK_TYPE_NAMES.get(column.type, str(column.type)),
                column.HasField("option") and column.option == pb.AUTO_INCREMENT,
            )
            for column in meta.primary_key
        )
        defined = tuple(
            (column.name, _DEFINED_TYPE_NAMES.get(column.type, str(column.type)))
            for column in meta.defined_column
        )
        options = req.table_options
        if not req.HasField("table_options") or not options.HasField("time_to_live"):
            raise exc.ParameterInvalid("Time-to-live is missing while creating table.")
        if not options.HasField("max_versions"):
            raise exc.ParameterInvalid("MaxVersions is missing while creating table.")
        capacity = req.reserved_throughput.capacity_unit
        info = m.TableInfo(
            name=meta.table_name,
            primary_key=primary_key,
            defined_columns=defined,
            time_to_live=options.time_to_live,
            max_versions=options.max_versions,
            max_time_deviation=(
                options.deviation_cell_version_in_sec
                if options.HasField("deviation_cell_version_in_sec")
                else 86400
            ),
            allow_update=options.allow_update if options.HasField("allow_update") else None,
            reserved_read=capacity.read,
            reserved_write=capacity.write,
        )

        def run() -> tuple[bytes, int]:
            self.backend.create_table(instance, info, has_indexes=len(req.index_metas) > 0)
            return pb.CreateTableResponse().SerializeToString(), 0

        return _Call([meta.table_name], run)

    def _describe_table(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.DescribeTableRequest, body)

        def run() -> tuple[bytes, int]:
            info = self.backend.describe_table(instance, req.table_name)
            resp = pb.DescribeTableResponse()
            resp.table_meta.table_name = info.name
            for column in info.primary_key:
                item = resp.table_meta.primary_key.add(name=column.name, type=_PK_TYPE_CODES[column.type])
                if column.auto_increment:
                    item.option = pb.AUTO_INCREMENT
            for name, type_name in info.defined_columns:
                resp.table_meta.defined_column.add(
                    name=name, type=_DEFINED_TYPE_CODES.get(type_name, pb.DCT_STRING)
                )
            _fill_throughput(resp.reserved_throughput_details, info)
            _fill_options(resp.table_options, info)
            return resp.SerializeToString(), 0

        return _Call([req.table_name], run)

    def _list_table(self, instance: str, body: bytes) -> _Call:
        _parse(pb.ListTableRequest, body)

        def run() -> tuple[bytes, int]:
            return pb.ListTableResponse(table_names=self.backend.list_tables(instance)).SerializeToString(), 0

        return _Call([], run)

    def _delete_table(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.DeleteTableRequest, body)

        def run() -> tuple[bytes, int]:
            self.backend.delete_table(instance, req.table_name)
            return pb.DeleteTableResponse().SerializeToString(), 0

        return _Call([req.table_name], run)

    def _update_table(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.UpdateTableRequest, body)
        reserved = None
        if req.HasField("reserved_throughput"):
            capacity = req.reserved_throughput.capacity_unit
            reserved = (
                capacity.read if capacity.HasField("read") else None,
                capacity.write if capacity.HasField("write") else None,
            )
        options: dict[str, Any] | None = None
        if req.HasField("table_options"):
            proto = req.table_options
            options = {}
            for wire, name in (
                ("time_to_live", "time_to_live"),
                ("max_versions", "max_versions"),
                ("deviation_cell_version_in_sec", "max_time_deviation"),
                ("allow_update", "allow_update"),
            ):
                if proto.HasField(wire):
                    options[name] = getattr(proto, wire)
            if not options:
                raise exc.ParameterInvalid("No parameter is specified in table options.")

        def run() -> tuple[bytes, int]:
            info = self.backend.update_table(instance, req.table_name, reserved=reserved, options=options)
            resp = pb.UpdateTableResponse()
            _fill_throughput(resp.reserved_throughput_details, info)
            _fill_options(resp.table_options, info)
            return resp.SerializeToString(), 0

        return _Call([req.table_name], run)

    # --- row operations -------------------------------------------------------------------------------------
    def _get_row(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.GetRowRequest, body)
        _no_transaction(req)
        key = _read_key(req.primary_key)
        options = _read_options(req)

        def run() -> tuple[bytes, int]:
            result = self.backend.get_row(instance, req.table_name, key, options)
            resp = pb.GetRowResponse(row=_encode_out(result.row))
            _fill_consumed(resp.consumed, result.consumed)
            return resp.SerializeToString(), 0

        return _Call([req.table_name], run)

    def _single_write(
        self, instance: str, table: str, change: m.RowChange, response: Callable[[], Any]
    ) -> _Call:
        def run() -> tuple[bytes, int]:
            result = self.backend.write_row(instance, table, change)
            resp = response()
            _fill_consumed(resp.consumed, result.consumed)
            if result.row is not None:
                resp.row = encode_row(*result.row)
            return resp.SerializeToString(), 0

        return _Call([table], run)

    def _put_row(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.PutRowRequest, body)
        _no_transaction(req)
        change = _row_change("put", _decode(req.row), req.condition, req.return_content)
        return self._single_write(instance, req.table_name, change, pb.PutRowResponse)

    def _update_row(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.UpdateRowRequest, body)
        _no_transaction(req)
        change = _row_change("update", _decode(req.row_change), req.condition, req.return_content)
        return self._single_write(instance, req.table_name, change, pb.UpdateRowResponse)

    def _delete_row(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.DeleteRowRequest, body)
        _no_transaction(req)
        change = _row_change("delete", _decode(req.primary_key), req.condition, req.return_content)
        return self._single_write(instance, req.table_name, change, pb.DeleteRowResponse)

    def _batch_get_row(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.BatchGetRowRequest, body)
        tables = [
            (table.table_name, [_read_key(raw) for raw in table.primary_key], _read_options(table))
            for table in req.tables
        ]

        def run() -> tuple[bytes, int]:
            results = self.backend.batch_get_row(instance, tables)
            resp = pb.BatchGetRowResponse()
            errors = 0
            for (name, _, _), table_results in zip(tables, results, strict=True):
                table = resp.tables.add(table_name=name)
                for result in table_results:
                    item = table.rows.add(is_ok=result.ok)
                    errors += _fill_row_result(item, result)
            return resp.SerializeToString(), errors

        return _Call([name for name, _, _ in tables], run)

    def _batch_write_row(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.BatchWriteRowRequest, body)
        _no_transaction(req)
        tables: list[tuple[str, list[m.RowChange]]] = []
        for table in req.tables:
            changes = []
            for row in table.rows:
                kind = _KINDS.get(row.type)
                if kind is None:
                    raise exc.ParameterInvalid("The modify type is invalid.")
                changes.append(_row_change(kind, _decode(row.row_change), row.condition, row.return_content))
            tables.append((table.table_name, changes))

        def run() -> tuple[bytes, int]:
            results = self.backend.batch_write_row(instance, tables)
            resp = pb.BatchWriteRowResponse()
            errors = 0
            for (name, _), table_results in zip(tables, results, strict=True):
                table = resp.tables.add(table_name=name)
                for result in table_results:
                    item = table.rows.add(is_ok=result.ok)
                    errors += _fill_row_result(item, result)
            return resp.SerializeToString(), errors

        return _Call([name for name, _ in tables], run)

    def _get_range(self, instance: str, body: bytes) -> _Call:
        req = _parse(pb.GetRangeRequest, body)
        _no_transaction(req)
        start = _read_key(req.inclusive_start_primary_key)
        end = _read_key(req.exclusive_end_primary_key)
        options = _read_options(req)
        limit = req.limit if req.HasField("limit") else None

        def run() -> tuple[bytes, int]:
            result = self.backend.get_range(
                instance, req.table_name, req.direction, start, end, options, limit
            )
            resp = pb.GetRangeResponse(rows=encode_rows(result.rows))
            _fill_consumed(resp.consumed, result.consumed)
            if result.next_start is not None:
                resp.next_start_primary_key = encode_primary_key(result.next_start)
            return resp.SerializeToString(), 0

        return _Call([req.table_name], run)


# --- decoding helpers ------------------------------------------------------------------------------------------
T = TypeVar("T")


def _guarded(step: Callable[[], T]) -> T:
    """A bug in the emulator answers 500 OTSInternalServerError (and is logged) instead of dropping the line."""
    try:
        return step()
    except exc.TablestoreError:
        raise
    except Exception as error:
        log.exception("local Tablestore: internal error")
        raise exc.InternalServerError() from error


def _parse(message_type: Any, body: bytes) -> Any:
    message = message_type()
    try:
        message.ParseFromString(body)
    except (DecodeError, EncodeError, ValueError):
        raise exc.ParameterInvalid("Parse PBMessage from RawString failed.") from None
    if not message.IsInitialized():
        raise exc.ParameterInvalid("Parse PBMessage from RawString failed.")
    return message


def _no_transaction(req: Any) -> None:
    if req.HasField("transaction_id"):
        raise exc.ParameterInvalid(
            "Try to call method using explicit transaction on explicit-transaction-disabled table."
        )


def _decode(raw: bytes) -> PlainRow:
    try:
        return decode_row(raw)
    except PlainBufferError as error:
        raise exc.ParameterInvalid(str(error)) from None


def _read_key(raw: bytes) -> m.PrimaryKey:
    row = _decode(raw)
    if row.cells:
        raise exc.ParameterInvalid("Attribute column cannot be given while reading data.")
    if row.delete_marker:
        raise exc.ParameterInvalid("Delete marker cannot be given.")
    return row.primary_key


def _read_options(req: Any) -> m.ReadOptions:
    time_range = None
    if req.HasField("time_range"):
        proto = req.time_range
        time_range = (
            proto.start_time if proto.HasField("start_time") else None,
            proto.end_time if proto.HasField("end_time") else None,
            proto.specific_time if proto.HasField("specific_time") else None,
        )
    return m.ReadOptions(
        columns=tuple(req.columns_to_get),
        filter=_read_filter_bytes(req.filter) if req.HasField("filter") else None,
        max_versions=req.max_versions if req.HasField("max_versions") else None,
        time_range=time_range,
        start_column=req.start_column if req.HasField("start_column") else None,
        end_column=req.end_column if req.HasField("end_column") else None,
    )


def _read_filter_bytes(raw: bytes) -> m.ColumnCondition:
    proto = fpb.Filter()
    try:
        proto.ParseFromString(raw)
    except DecodeError:
        raise exc.ParameterInvalid("Deserialize filter failed.") from None
    return _read_filter(proto)


def _read_filter(proto: Any) -> m.ColumnCondition:
    if proto.type == fpb.FT_SINGLE_COLUMN_VALUE:
        single = fpb.SingleColumnValueFilter()
        try:
            single.ParseFromString(proto.filter)
            value = (
                parse_value_bytes(single.column_value, single.column_name) if single.column_value else None
            )
        except (DecodeError, PlainBufferError, IndexError):
            raise exc.ParameterInvalid("Deserialize relation filter failed.") from None
        if value is None and single.comparator not in (fpb.CT_EXIST, fpb.CT_NOT_EXIST):
            raise exc.ParameterInvalid("Deserialize relation filter failed.")
        regex = cast = None
        if single.HasField("value_trans_rule"):
            regex = single.value_trans_rule.regex
            cast = (
                single.value_trans_rule.cast_type if single.value_trans_rule.HasField("cast_type") else None
            )
        return m.SingleColumnCondition(
            column=single.column_name,
            comparator=single.comparator,
            value=value or Value(0, 0),
            pass_if_missing=not single.filter_if_missing,
            latest_version_only=single.latest_version_only,
            regex=regex,
            cast_type=cast,
        )
    if proto.type == fpb.FT_COMPOSITE_COLUMN_VALUE:
        composite = fpb.CompositeColumnValueFilter()
        try:
            composite.ParseFromString(proto.filter)
        except DecodeError:
            raise exc.ParameterInvalid("Deserialize composite filter failed.") from None
        return m.CompositeColumnCondition(
            composite.combinator, tuple(_read_filter(sub) for sub in composite.sub_filters)
        )
    if proto.type == fpb.FT_COLUMN_PAGINATION:
        raise exc.ParameterInvalid("ColumnPaginationFilter is not supported by the local Tablestore.")
    raise exc.ParameterInvalid(f"Invalid type of filter: {proto.type}.")


def _row_change(kind: str, row: PlainRow, condition: Any, return_content: Any) -> m.RowChange:
    column = (
        _read_filter_bytes(condition.column_condition) if condition.HasField("column_condition") else None
    )
    return_type = return_content.return_type if return_content.HasField("return_type") else m.RT_NONE
    return m.RowChange(
        kind=kind,
        primary_key=row.primary_key,
        cells=tuple(row.cells),
        condition=m.RowCondition(condition.row_existence, column),
        return_type=return_type,
        return_columns=tuple(return_content.return_column_names),
        delete_marker=row.delete_marker,
    )


# --- encoding helpers ------------------------------------------------------------------------------------------
def _encode_out(row: m.OutRow | None) -> bytes:
    return encode_row(*row) if row is not None else b""


def _fill_consumed(proto: Any, consumed: m.Consumed) -> None:
    proto.capacity_unit.read = consumed.read
    proto.capacity_unit.write = consumed.write


def _fill_row_result(item: Any, result: m.RowResult) -> int:
    if result.error is not None:
        item.error.code = result.error.code
        item.error.message = result.error.message
        if result.consumed.read or result.consumed.write:
            _fill_consumed(item.consumed, result.consumed)
        return 1
    _fill_consumed(item.consumed, result.consumed)
    item.row = _encode_out(result.row)
    return 0


def _fill_throughput(proto: Any, info: m.TableInfo) -> None:
    proto.capacity_unit.read = info.reserved_read
    proto.capacity_unit.write = info.reserved_write
    proto.last_increase_time = info.last_increase_time
    if info.last_decrease_time is not None:
        proto.last_decrease_time = info.last_decrease_time


def _fill_options(proto: Any, info: m.TableInfo) -> None:
    proto.time_to_live = info.time_to_live
    proto.max_versions = info.max_versions
    proto.deviation_cell_version_in_sec = info.max_time_deviation
    if info.allow_update is not None:
        proto.allow_update = info.allow_update


# --- admin ---------------------------------------------------------------------------------------------------
class AdminResponse:
    """Unsigned test endpoints under ``/_localtablestore/``, answered to loopback clients only.

    GET  /_localtablestore/requests  every request (JSON list of RequestRecord fields)
    GET  /_localtablestore/stats     counts by API and by code
    POST /_localtablestore/reset     drop every table and row, the record and pending faults
    POST /_localtablestore/faults    JSON object: {"fail_next": {...}, "timeout_next": {...},
                                     "fail_rows_next": {...}, "clear": true} — the backend methods' arguments
    """

    def __init__(self, backend: m.TablestoreBackend) -> None:
        self.backend = backend

    def dispatch(self, request: HttpRequest) -> Reply:
        if not is_loopback(request.client_host):
            return _json(403, {"code": "Forbidden", "message": "Admin endpoints answer loopback only."})
        route = (request.method, request.path)
        if route == ("GET", ADMIN_PREFIX + "requests"):
            return _json(200, self.backend.snapshot_requests())
        if route == ("GET", ADMIN_PREFIX + "stats"):
            return _json(200, self.backend.stats())
        if route == ("POST", ADMIN_PREFIX + "reset"):
            self.backend.reset()
            return _json(200, {"ok": True})
        if route == ("POST", ADMIN_PREFIX + "faults"):
            try:
                self._apply_faults(json_object(request.body))
            except (ValueError, TypeError) as error:
                return _json(400, {"code": "InvalidConfig", "message": str(error)})
            return _json(200, {"ok": True})
        return _json(
            404, {"code": "NotFound", "message": f"No admin endpoint {request.method} {request.path}."}
        )

    def _apply_faults(self, options: dict[str, Any]) -> None:
        unknown = set(options) - {"fail_next", "timeout_next", "fail_rows_next", "clear"}
        if unknown:
            raise ValueError(f"unknown fault options {sorted(unknown)}")
        if options.get("clear"):
            self.backend.clear_faults()
        for name in ("fail_next", "timeout_next", "fail_rows_next"):
            if name in options:
                value = options[name]
                kwargs = dict(value) if isinstance(value, dict) else {"n": int(value)}
                getattr(self.backend, name)(**kwargs)


def _json(status: int, body: Any) -> Reply:
    return Reply(status, json.dumps(body).encode("utf-8"), [("Content-Type", "application/json")])
