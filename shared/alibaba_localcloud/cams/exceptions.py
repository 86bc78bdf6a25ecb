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
    The gateway's request-line limit (16 KiB here) and body limit (1 MiB here): see the transport section.
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


class ForbiddenRam(CamsError):
    """The API gateway's refusal of a request a RAM policy does not allow (a role's STS credentials).

    Source: the public (POP gateway) error codes page (help.aliyun.com/en/document_detail/3064376.html):
    403 ``Forbidden.RAM`` "User not authorized to operate on the specified resource, or this API doesn't
    support RAM."; the ``AccessDeniedDetail`` object (AuthAction, AuthPrincipalType, AuthPrincipalOwnerId,
    AuthPrincipalDisplayName, NoPermissionType ImplicitDeny|ExplicitDeny, PolicyType) as OpenAPI 403
    replies carry it (e.g. the AgentRun "AccessDeniedDetail" struct page, "aligned with the 403 access
    denied response"). ASSUMPTIONS: CAMS answers through the same gateway with this code (not its own
    400 ``Ram.PermissionDeny``, kept for an account-level refusal); PolicyType AccountLevelIdentityBasedPolicy
    and AuthPrincipalType AssumedRoleUser (a role's STS credentials); no EncodedDiagnosticMessage."""

    http_status, code, message = (
        403,
        "Forbidden.RAM",
        "User not authorized to operate on the specified resource, or this API doesn't support RAM.",
    )

    def __init__(self, action: str, no_permission_type: str, owner: str, principal: str) -> None:
        super().__init__()
        self.detail = {
            "PolicyType": "AccountLevelIdentityBasedPolicy",
            "AuthPrincipalOwnerId": owner,
            "AuthPrincipalType": "AssumedRoleUser",
            "AuthPrincipalDisplayName": principal,
            "NoPermissionType": no_permission_type,
            "AuthAction": action,
        }

    def body(self, request_id: str) -> dict[str, Any]:
        return {**super().body(request_id), "AccessDeniedDetail": dict(self.detail)}


# --- documented on the SendChatappMassMessage pages (HTTP 400) -------------------------------------------
class SystemLimitControl(CamsError):
    http_status, code, message = 400, "System.LimitControl", "The system is under flow control."


class RamPermissionDeny(CamsError):
    http_status, code, message = 400, "Ram.PermissionDeny", "You are not authorized to perform the operation."


class ProductUnsubscript(CamsError):
    http_status, code, message = (
        400,
        "Product.Unsubscript",
        "You have not subscribed to the specified product.",
    )


class UnknownResourceOwnerId(CamsError):
    http_status, code, message = (
        400,
        "Unknown.ResourceOwnerId",
        "The resource does not belong to the current user.",
    )


# --- CAMS parameter codes (names verified; HTTP 200 assumed) --------------------------------------------
class PhoneNumberError(CamsError):
    http_status, code, message = 200, "InvalidParameter.PhoneNumberError", "The phone number is invalid."


class ChannelTypeNotSupport(CamsError):
    http_status, code, message = (
        200,
        "InvalidParameter.ChannelTypeNotSupport",
        "The channel type is not supported.",
    )


class TemplateCodeNotEmpty(CamsError):
    http_status, code, message = (
        200,
        "InvalidParameter.TemplateCodeNotEmpty",
        "The template code cannot be empty when sending a template message.",
    )


class LanguageNotEmpty(CamsError):
    http_status, code, message = (
        200,
        "InvalidParameter.LanguageNotEmpty",
        "The language cannot be empty when sending a template message.",
    )


class FromOnlyNumeric(CamsError):
    http_status, code, message = (
        200,
        "InvalidParameter.FromOnlyNumeric",
        "The sender number can contain only digits.",
    )


class TemplateNotExist(CamsError):
    http_status, code, message = (
        200,
        "DetailError.TemplateNotExist",
        "The template does not exist. Check the template code.",
    )


class SenderListOverLimit(CamsError):
    """ASSUMPTION: code and status invented; the docs only say "up to 1,000 phone numbers"."""

    http_status, code, message = (
        200,
        "InvalidParameter.SenderListOverLimit",
        "A single request can include up to 1,000 phone numbers.",
    )


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
    http_status, code, message = (
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation.",
    )


class IncompleteSignature(CamsError):
    http_status, code, message = (
        400,
        "IncompleteSignature",
        "The request signature does not conform to Aliyun standards.",
    )


class InvalidSignatureMethod(CamsError):
    http_status, code, message = 400, "InvalidSignatureMethod", "Specified signature method is not valid."


class InvalidAccessKeyIdNotFound(CamsError):
    http_status, code, message = 404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."


class MissingSecurityToken(CamsError):
    """Name verified; HTTP 400 and message assumed."""

    http_status, code, message = 400, "MissingSecurityToken", "SecurityToken is mandatory for this action."


class InvalidSecurityTokenMismatch(CamsError):
    """Name verified; HTTP 400 and message assumed."""

    http_status, code, message = (
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
        "Specified SecurityToken mismatch with the AccessKey.",
    )


class InvalidSecurityTokenMalformed(CamsError):
    """Name verified; HTTP 400 and message assumed."""

    http_status, code, message = (
        400,
        "InvalidSecurityToken.Malformed",
        "Specified SecurityToken is malformed.",
    )


class InvalidSecurityTokenExpired(CamsError):
    """Name verified; HTTP 400 and message assumed. Not raised by default (tokens here do not expire)."""

    http_status, code, message = 400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."


class InvalidTimeStampExpired(CamsError):
    http_status, code, message = (
        400,
        "InvalidTimeStamp.Expired",
        "Specified time stamp or date value is expired.",
    )


class InvalidTimeStampFormat(CamsError):
    http_status, code, message = (
        400,
        "InvalidTimeStamp.Format",
        "Specified time stamp or date value is not well formatted.",
    )


class SignatureNonceUsed(CamsError):
    http_status, code, message = 400, "SignatureNonceUsed", "Specified signature nonce was used already."


class InvalidApiNotFound(CamsError):
    http_status, code, message = (
        404,
        "InvalidApi.NotFound",
        "Specified api is not found, please check your url and method.",
    )


# --- transport: the gateway's own HTML pages -------------------------------------------------------------
# The OpenAPI gateway is Tengine; refusing a request before any API logic it answers with Tengine's HTML
# error page, not JSON. Verified for an over-long URL: aliyun/openapi-core-nodejs-sdk issue #55 quotes the
# page (``<title>414 Request-URI Too Large</title>`` ... ``Powered by Tengine``) from a ``*.aliyuncs.com``
# endpoint. The 413 page has the same shape on another Alibaba Tengine gateway (alipay/alipay-sdk-nodejs-all
# issue #130: ``<title>413 Request Entity Too Large</title>``); that the OpenAPI gateway answers an
# over-large body so is an ASSUMPTION. The limits themselves are not documented (see models.py).
_TENGINE_PAGE = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html>\r\n<head><title>{title}</title></head>\r\n'
    '<body bgcolor="white">\r\n<h1>{title}</h1>\r\n<p>{text} Sorry for the inconvenience.<br/>\r\n'
    "Please report this message and include the following information to us.<br/>\r\n"
    "Thank you very much!</p>\r\n<table>\r\n<tr>\r\n<td>URL:</td>\r\n<td>http://local-cams</td>\r\n"
    "</tr>\r\n<tr>\r\n<td>Server:</td>\r\n<td>local-cams</td>\r\n</tr>\r\n</table>\r\n"
    "<hr/>Powered by Tengine</body>\r\n</html>\r\n"
)


class GatewayPageError(CamsError):
    """Refused by the gateway itself: the reply is its HTML page (``html``), never JSON."""

    @property
    def html(self) -> bytes:
        return _TENGINE_PAGE.format(
            title=f"{self.http_status} {self.page_title}", text=self.page_text
        ).encode("utf-8")

    page_title = ""
    page_text = ""


class RequestURITooLong(GatewayPageError):
    """HTTP 414 with Tengine's HTML page (issue #55 above). The code is ours, for the record only."""

    http_status, code, message = 414, "RequestURITooLong", "The request line is too long."
    page_title = "Request-URI Too Large"
    page_text = "The requested URL's length exceeds the capacity limit for this server."


class RequestEntityTooLarge(GatewayPageError):
    """HTTP 413 with Tengine's HTML page (ASSUMPTION, see above). The code is ours, for the record only."""

    http_status, code, message = 413, "RequestEntityTooLarge", "The request body is too large."
    page_title = "Request Entity Too Large"
    page_text = (
        "The requested resource does not allow request data with the requested method or the amount "
        "of data provided in the request exceeds the capacity limit."
    )


class ServiceUnavailable(CamsError):
    http_status, code, message = (
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    )


# Codes a test can name in ``fail_next``/``refuse_all`` without importing the classes.
KNOWN_ERRORS: dict[str, type[CamsError]] = {
    cls.code: cls
    for cls in (
        SystemLimitControl,
        RamPermissionDeny,
        ProductUnsubscript,
        UnknownResourceOwnerId,
        PhoneNumberError,
        ChannelTypeNotSupport,
        TemplateCodeNotEmpty,
        LanguageNotEmpty,
        FromOnlyNumeric,
        TemplateNotExist,
        SenderListOverLimit,
        InvalidParameter,
        SignatureDoesNotMatch,
        IncompleteSignature,
        InvalidSignatureMethod,
        InvalidAccessKeyIdNotFound,
        MissingSecurityToken,
        InvalidSecurityTokenMismatch,
        InvalidSecurityTokenMalformed,
        InvalidSecurityTokenExpired,
        InvalidTimeStampExpired,
        InvalidTimeStampFormat,
        SignatureNonceUsed,
        InvalidApiNotFound,
        RequestURITooLong,
        RequestEntityTooLarge,
        ServiceUnavailable,
    )
}


def error_for(code: str, message: str | None = None, http_status: int | None = None) -> CamsError:
    """An error with ``code``; known codes keep their documented status and message unless overridden."""
    return error_for_code(CamsError, KNOWN_ERRORS, 400, code, message, http_status)
