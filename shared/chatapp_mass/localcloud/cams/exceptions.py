"""The error codes the local CAMS answers with, as the real service spells them.

Every class carries ``(http_status, code, message)``; the emulator turns one into the reply body
``{"Code": code, "Message": message, "RequestId": ...}`` with that HTTP status.

Provenance (checked 2025 with the team's search tools; keep this list honest when you change it):

Verified — documented on the SendChatappMassMessage API pages (reference/cams-SendChatappMassMessage*.txt),
HTTP 400 with these messages:
    Product.Unsubscript, Ram.PermissionDeny, System.LimitControl, Unknown.ResourceOwnerId

Verified code names — CAMS generic error-code page
(https://help.aliyun.com/en/chatapp/developer-reference/api-error-codes); the page gives no HTTP status:
    InvalidParameter.PhoneNumberError, InvalidParameter.ChannelTypeNotSupport,
    InvalidParameter.TemplateCodeNotEmpty, InvalidParameter.LanguageNotEmpty,
    InvalidParameter.FromOnlyNumeric, DetailError.TemplateNotExist
    ASSUMPTION: they come back as HTTP 200 with ``Code`` != "OK" (the usual pattern of Alibaba messaging
    APIs; the SDK then returns normally and the caller must read ``body.code``). Messages are paraphrases
    of the page's descriptions.

Verified — Alibaba OpenAPI gateway common error codes (help.aliyun.com "公共错误码" / "client error codes"
pages, e.g. https://help.aliyun.com/document_detail/51132.html, developer.aliyun.com/ask/278265):
    SignatureDoesNotMatch        400  "Specified signature is not matched with our calculation."
    IncompleteSignature          400  "The request signature does not conform to Aliyun standards."
    InvalidAccessKeyId.NotFound  404  "Specified access key is not found."
    InvalidApi.NotFound          404  "Specified api is not found, please check your url and method."
    InvalidSignatureMethod       400  "Specified signature method is not valid."
    InvalidTimeStamp.Expired     400  "Specified time stamp or date value is expired." (15 minutes)
    InvalidTimeStamp.Format      400  "Specified time stamp or date value is not well formatted."
    SignatureNonceUsed           400  "Specified signature nonce was used already."
    Missing{ParameterName}       400  "{ParameterName} is mandatory for this action."
    Invalid{ParameterName}       400  "Specified parameter {ParameterName} is not valid."
    ServiceUnavailable           503  (server error family; code name verified, status is HTTP's)

Verified code names, ASSUMED HTTP status 400 and paraphrased messages (the public list names them without a
status; they appear in SDK/terraform constant tables mirroring that list):
    MissingSecurityToken, InvalidSecurityToken.MismatchWithAccessKey, InvalidSecurityToken.Malformed,
    InvalidSecurityToken.Expired

ASSUMPTIONS (no public source):
    InvalidParameter.SenderListOverLimit  more than 1,000 recipients in one call (HTTP 200 like the other
                                          CAMS parameter codes). The docs only state the limit.
    RequestURITooLong                     HTTP 414 for a request line longer than the gateway accepts; the
                                          real gateway's URL limit and its answer are unknown.
    Which gateway code answers a missing From / SenderList, a malformed SenderList, or an out-of-range
    Ttl / FallBackDuration / Label / FallBackRule (we use the verified Missing{X} / Invalid{X} patterns).
"""

from __future__ import annotations

from typing import Any

from .._errors import ServiceError, error_for_code


class CamsError(ServiceError):
    """Root of every error the local CAMS answers with."""

    http_status: int = 400
    code: str = "InternalError"
    message: str = "An internal error occurred."

    def body(self, request_id: str) -> dict[str, Any]:
        return {"Code": self.code, "Message": self.message, "RequestId": request_id}


# --- documented on the SendChatappMassMessage pages (HTTP 400) -------------------------------------------
class SystemLimitControl(CamsError):
    http_status, code, message = 400, "System.LimitControl", "The system is under flow control."


class RamPermissionDeny(CamsError):
    http_status, code, message = 400, "Ram.PermissionDeny", "You are not authorized to perform the operation."


class ProductUnsubscript(CamsError):
    http_status, code, message = (400, "Product.Unsubscript",
                                  "You have not subscribed to the specified product.")


class UnknownResourceOwnerId(CamsError):
    http_status, code, message = (400, "Unknown.ResourceOwnerId",
                                  "The resource does not belong to the current user.")


# --- CAMS parameter codes (names verified; HTTP 200 assumed) --------------------------------------------
class PhoneNumberError(CamsError):
    http_status, code, message = 200, "InvalidParameter.PhoneNumberError", "The phone number is invalid."


class ChannelTypeNotSupport(CamsError):
    http_status, code, message = (200, "InvalidParameter.ChannelTypeNotSupport",
                                  "The channel type is not supported.")


class TemplateCodeNotEmpty(CamsError):
    http_status, code, message = (200, "InvalidParameter.TemplateCodeNotEmpty",
                                  "The template code cannot be empty when sending a template message.")


class LanguageNotEmpty(CamsError):
    http_status, code, message = (200, "InvalidParameter.LanguageNotEmpty",
                                  "The language cannot be empty when sending a template message.")


class FromOnlyNumeric(CamsError):
    http_status, code, message = (200, "InvalidParameter.FromOnlyNumeric",
                                  "The sender number can contain only digits.")


class TemplateNotExist(CamsError):
    http_status, code, message = (200, "DetailError.TemplateNotExist",
                                  "The template does not exist. Check the template code.")


class SenderListOverLimit(CamsError):
    """ASSUMPTION: code and status invented; the docs only say "up to 1,000 phone numbers"."""

    http_status, code, message = (200, "InvalidParameter.SenderListOverLimit",
                                  "A single request can include up to 1,000 phone numbers.")


# --- gateway: parameters ------------------------------------------------------------------------------
class MissingParameter(CamsError):
    """``Missing{ParameterName}`` (pattern verified; its use for this API's fields is an assumption)."""

    http_status = 400

    def __init__(self, parameter: str) -> None:
        super().__init__(f"{parameter} is mandatory for this action.", code=f"Missing{parameter}")


class InvalidParameterValue(CamsError):
    """``Invalid{ParameterName}`` (pattern verified; its use for this API's fields is an assumption)."""

    http_status = 400

    def __init__(self, parameter: str, detail: str = "") -> None:
        message = f"Specified parameter {parameter} is not valid."
        super().__init__(message + (f" {detail}" if detail else ""), code=f"Invalid{parameter}")


class InvalidParameter(CamsError):
    http_status, code, message = 400, "InvalidParameter", "The specified parameter is not valid."


# --- gateway: signature and credentials ----------------------------------------------------------------
class SignatureDoesNotMatch(CamsError):
    http_status, code, message = (400, "SignatureDoesNotMatch",
                                  "Specified signature is not matched with our calculation.")


class IncompleteSignature(CamsError):
    http_status, code, message = (400, "IncompleteSignature",
                                  "The request signature does not conform to Aliyun standards.")


class InvalidSignatureMethod(CamsError):
    http_status, code, message = 400, "InvalidSignatureMethod", "Specified signature method is not valid."


class InvalidAccessKeyIdNotFound(CamsError):
    http_status, code, message = 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."


class MissingSecurityToken(CamsError):
    """Name verified; HTTP 400 and message assumed."""

    http_status, code, message = 400, "MissingSecurityToken", "SecurityToken is mandatory for this action."


class InvalidSecurityTokenMismatch(CamsError):
    """Name verified; HTTP 400 and message assumed."""

    http_status, code, message = (400, "InvalidSecurityToken.MismatchWithAccessKey",
                                  "Specified SecurityToken mismatch with the AccessKey.")


class InvalidSecurityTokenMalformed(CamsError):
    """Name verified; HTTP 400 and message assumed."""

    http_status, code, message = (400, "InvalidSecurityToken.Malformed",
                                  "Specified SecurityToken is malformed.")


class InvalidSecurityTokenExpired(CamsError):
    """Name verified; HTTP 400 and message assumed. Not raised by default (tokens here do not expire)."""

    http_status, code, message = 400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."


class InvalidTimeStampExpired(CamsError):
    http_status, code, message = (400, "InvalidTimeStamp.Expired",
                                  "Specified time stamp or date value is expired.")


class InvalidTimeStampFormat(CamsError):
    http_status, code, message = (400, "InvalidTimeStamp.Format",
                                  "Specified time stamp or date value is not well formatted.")


class SignatureNonceUsed(CamsError):
    http_status, code, message = 400, "SignatureNonceUsed", "Specified signature nonce was used already."


class InvalidApiNotFound(CamsError):
    http_status, code, message = (404, "InvalidApi.NotFound",
                                  "Specified api is not found, please check your url and method.")


# --- transport ---------------------------------------------------------------------------------------
class RequestURITooLong(CamsError):
    """ASSUMPTION: the real gateway's URL limit and answer are unknown; this is http.server's status."""

    http_status, code, message = 414, "RequestURITooLong", "The request line is too long."


class ServiceUnavailable(CamsError):
    http_status, code, message = (503, "ServiceUnavailable",
                                  "The request has failed due to a temporary failure of the server.")


# Codes a test can name in ``fail_next``/``refuse_all`` without importing the classes.
KNOWN_ERRORS: dict[str, type[CamsError]] = {
    cls.code: cls
    for cls in (
        SystemLimitControl, RamPermissionDeny, ProductUnsubscript, UnknownResourceOwnerId,
        PhoneNumberError, ChannelTypeNotSupport, TemplateCodeNotEmpty, LanguageNotEmpty, FromOnlyNumeric,
        TemplateNotExist, SenderListOverLimit, InvalidParameter, SignatureDoesNotMatch, IncompleteSignature,
        InvalidSignatureMethod, InvalidAccessKeyIdNotFound, MissingSecurityToken,
        InvalidSecurityTokenMismatch, InvalidSecurityTokenMalformed, InvalidSecurityTokenExpired,
        InvalidTimeStampExpired, InvalidTimeStampFormat, SignatureNonceUsed, InvalidApiNotFound,
        RequestURITooLong, ServiceUnavailable,
    )
}


def error_for(code: str, message: str | None = None, http_status: int | None = None) -> CamsError:
    """An error with ``code``; known codes keep their documented status and message unless overridden."""
    return error_for_code(CamsError, KNOWN_ERRORS, 400, code, message, http_status)
