"""The error codes the local Tablestore answers with, as the real service spells them.

Every error carries ``(http_status, code, message)``; the emulator answers it as a non-2xx HTTP status with a
protobuf ``Error{code, message}`` body, which ``tablestore.OTSClient`` raises as ``OTSServiceError`` (inside
BatchGetRow/BatchWriteRow a row-level error is the row's ``error`` and the request still answers 200).

Provenance (keep this list honest when you change it):

Verified — Tablestore "Error codes" page (https://www.alibabacloud.com/help/en/tablestore/developer-reference/
error-codes, help.aliyun.com document 27300), status, code and message as listed there:
    403 OTSAuthFailed            "The AccessKeyID does not exist." / "The instance is not found." /
                                 "Signature mismatch." / "Mismatch between system time and x-ots-date: {Date}." /
                                 "Mismatch between MD5 value of request body and x-ots-contentmd5 in header."
    413 OTSRequestBodyTooLarge   "The size of POST data is too large."
    405 OTSMethodNotAllowed      "OTSMethodNotAllowedOnly POST method for requests is supported."
    400 OTSParameterInvalid      "Missing header: {HeaderName}." / "Invalid date format: {Date}." /
                                 "Unsupported operation: {Operation}." and the per-API messages used in models.py
    400 OTSInvalidPK, OTSOutOfRowSizeLimit, OTSOutOfColumnCountLimit
    500 OTSInternalServerError   "Internal server error."
    403 OTSQuotaExhausted        "Too frequent table operations." (Retry: Yes) / "Number of tables exceeded the
                                 quota." (Retry: No) -- "HTTP 403 errors"; the realistic mode answers the first
                                 past 10 table operations per second (models.DEFAULT_TABLE_OPERATIONS_PER_SECOND)
    503 OTSServerBusy "Server is busy.", OTSPartitionUnavailable "The partition is not available.",
        OTSTimeout "Operation timeout.", OTSServerUnavailable "Server is not available."
    409 OTSRowOperationConflict  "Data is being modified by the other request."
    409 OTSObjectAlreadyExist    "Requested table already exists."
    404 OTSObjectNotExist        "Requested table does not exist."
    404 OTSTableNotReady         "The table is not ready." (Retry: Yes; "The table is being initialized. Wait a few
                                 seconds and try again.") -- the realistic mode, after CreateTable
    400 OTSParameterInvalid      "The total data size of PutRow request exceeds the limit, limit size: {Limit} ,
                                 data size: {Current}." (and UpdateRow) -- over 4 MB in one row write
    403 OTSCapacityUnitExhausted "Capacity unit is not enough."
    403 OTSNoPermissionAccess    "You have no permission to access the requested resource, please contact the
                                 resource owner" -- a RAM policy that does not allow the request (same page,
                                 "Permission verification errors"; faq-detail/38586)
    403 OTSConditionCheckFail    "Condition check failed."
    429 OTSFlowControl           "The requests have been throttled."
Verified — the SDK's own integration tests (aliyun/aliyun-tablestore-python-sdk tests/row_op_test.py,
table_operation_test.py): OTSInvalidPK "Validate PK name fail. Input: {in}, Meta: {meta}." and
"Validate PK size fail. Input: {n}, Meta: {m}.", "No operation is specified for table: '{table}'.",
"The limit must be greater than 0.", "Begin key must less than end key in FORWARD" (and BACKWARD), and that
these are 400s.

ASSUMPTIONS (no public source): the messages for a missing or wrong STS token (403 OTSAuthFailed, see
:class:`AuthFailed`), "Validate PK type fail. ..." for a PK value of the wrong type, OTSNotEnoughCapacityUnit
(403, named by the SDK's retry policy), and the message of a PlainBuffer checksum mismatch.
"""

from __future__ import annotations

from .._errors import ServiceError, error_for_code


class TablestoreError(ServiceError):
    """Root of every error the local Tablestore answers with."""

    http_status: int = 500
    code: str = "OTSInternalServerError"
    message: str = "Internal server error."


# --- 4xx: the request is wrong ------------------------------------------------------------------------------
class ParameterInvalid(TablestoreError):
    http_status, code, message = 400, "OTSParameterInvalid", "The input parameter is invalid."


class InvalidPK(TablestoreError):
    http_status, code, message = 400, "OTSInvalidPK", "Primary key schema mismatch."


class OutOfRowSizeLimit(TablestoreError):
    http_status, code, message = (
        400,
        "OTSOutOfRowSizeLimit",
        "The total data size of columns in one row exceeded the limit.",
    )


class OutOfColumnCountLimit(TablestoreError):
    http_status, code, message = (
        400,
        "OTSOutOfColumnCountLimit",
        "The number of columns in one row exceeded the limit.",
    )


class AuthFailed(TablestoreError):
    """403; the message says which check failed (see the module docstring for the verified ones)."""

    http_status, code, message = 403, "OTSAuthFailed", "Signature mismatch."


class NoPermissionAccess(TablestoreError):
    """403: a role's RAM policy does not allow the API on the table (or, for ListTable, the instance)."""

    http_status, code, message = (
        403,
        "OTSNoPermissionAccess",
        "You have no permission to access the requested resource, please contact the resource owner",
    )


class MethodNotAllowed(TablestoreError):
    http_status, code, message = (
        405,
        "OTSMethodNotAllowed",
        "OTSMethodNotAllowedOnly POST method for requests is supported.",
    )


class RequestBodyTooLarge(TablestoreError):
    http_status, code, message = 413, "OTSRequestBodyTooLarge", "The size of POST data is too large."


class ObjectNotExist(TablestoreError):
    http_status, code, message = 404, "OTSObjectNotExist", "Requested table does not exist."


class ObjectAlreadyExist(TablestoreError):
    http_status, code, message = 409, "OTSObjectAlreadyExist", "Requested table already exists."


class ConditionCheckFail(TablestoreError):
    http_status, code, message = 403, "OTSConditionCheckFail", "Condition check failed."


class QuotaExhausted(TablestoreError):
    http_status, code, message = 403, "OTSQuotaExhausted", "Number of tables exceeded the quota."


class CapacityUnitExhausted(TablestoreError):
    http_status, code, message = 403, "OTSCapacityUnitExhausted", "Capacity unit is not enough."


class NotEnoughCapacityUnit(TablestoreError):
    """ASSUMPTION: status 403 (the code is named by the SDK's retry policy; the docs list no status)."""

    http_status, code, message = 403, "OTSNotEnoughCapacityUnit", "Remaining capacity unit is not enough."


class RowOperationConflict(TablestoreError):
    http_status, code, message = (
        409,
        "OTSRowOperationConflict",
        "Data is being modified by the other request.",
    )


class TableNotReady(TablestoreError):
    http_status, code, message = 404, "OTSTableNotReady", "The table is not ready."


class FlowControl(TablestoreError):
    http_status, code, message = 429, "OTSFlowControl", "The requests have been throttled."


# --- 5xx: the service is unwell (transient) -------------------------------------------------------------
class InternalServerError(TablestoreError):
    http_status, code, message = 500, "OTSInternalServerError", "Internal server error."


class ServerBusy(TablestoreError):
    http_status, code, message = 503, "OTSServerBusy", "Server is busy."


class PartitionUnavailable(TablestoreError):
    http_status, code, message = 503, "OTSPartitionUnavailable", "The partition is not available."


class Timeout(TablestoreError):
    http_status, code, message = 503, "OTSTimeout", "Operation timeout."


class ServerUnavailable(TablestoreError):
    http_status, code, message = 503, "OTSServerUnavailable", "Server is not available."


# Codes a test can name in ``fail_next`` without importing the classes.
KNOWN_ERRORS: dict[str, type[TablestoreError]] = {
    cls.code: cls
    for cls in (
        ParameterInvalid,
        InvalidPK,
        OutOfRowSizeLimit,
        OutOfColumnCountLimit,
        AuthFailed,
        NoPermissionAccess,
        MethodNotAllowed,
        RequestBodyTooLarge,
        ObjectNotExist,
        ObjectAlreadyExist,
        ConditionCheckFail,
        QuotaExhausted,
        CapacityUnitExhausted,
        NotEnoughCapacityUnit,
        RowOperationConflict,
        TableNotReady,
        FlowControl,
        InternalServerError,
        ServerBusy,
        PartitionUnavailable,
        Timeout,
        ServerUnavailable,
    )
}


def error_for(code: str, message: str | None = None, http_status: int | None = None) -> TablestoreError:
    """An error with ``code``; known codes keep their documented status and message unless overridden."""
    return error_for_code(TablestoreError, KNOWN_ERRORS, 500, code, message, http_status)
