"""The error codes the local FC answers the InvokeFunction API with, as FC 3.0 spells them.

The reply is the FC 2023-03-30 ``Error`` struct: ``{"Code": ..., "Message": ..., "RequestId": ...}`` with the
HTTP status below; the SDK raises ``ClientException`` for 4xx and ``ServerException`` for 5xx.

Provenance (keep it honest when you change it):

Verified — FC error-code pages (https://www.alibabacloud.com/help/en/functioncompute/error-codes,
help.aliyun.com/zh/functioncompute/api-fc-2023-03-30-errorcodes) give code, status and message:
    InvalidArgument 400 (%s), MissingRequiredHeader 400, PathNotSupported 400 ("'%s' against '%s' is not
    supported"), EntityTooLarge 400 ("payload size exceeds maximum allowed size (%s bytes)"),
    AccessDenied 403, SignatureNotMatch 403 ("The request signature we calculated does not match the
    signature you provided. Check your access key and signing method"), InvalidAccessKeyID 403
    ("invalid access key ID '%s'"), FunctionNotFound 404 ("function '%s' does not exist."),
    ResourceExhausted 429, InternalServerError 500 ("an internal error has occurred. Please retry."),
    ResourceThrottled 503. The error struct's keys (Code/Message/RequestId) are from the 2023-03-30 API's
    ``Error`` struct page.

ASSUMPTIONS:
    An async payload over 128 KB answers EntityTooLarge (the documented code for "payload too large"; the
    brief for this emulator guessed InvalidArgument — both are 400).
    AliasNotFound / VersionNotFound 404 for a qualifier other than LATEST (FC 2.0 page; the emulator has no
    versions or aliases).
    The signature checks are the local CAMS's (the same ACS3-HMAC-SHA256 gateway); its refusals map to FC's
    codes: unknown key -> InvalidAccessKeyID, any signature problem -> SignatureNotMatch, token, replay and
    expired-timestamp problems -> AccessDenied, a malformed timestamp -> InvalidArgument. FC's own choices
    for the token / timestamp / nonce cases are undocumented.
"""

from __future__ import annotations

from typing import Any

from .._errors import ServiceError


class FcError(ServiceError):
    """Root of every error the local FC answers with."""

    http_status: int = 500
    code: str = "InternalServerError"
    message: str = "an internal error has occurred. Please retry."

    def body(self, request_id: str) -> dict[str, Any]:
        return {"Code": self.code, "Message": self.message, "RequestId": request_id}


class InvalidArgument(FcError):
    http_status, code, message = 400, "InvalidArgument", "invalid argument"


class MissingRequiredHeader(FcError):
    http_status, code = 400, "MissingRequiredHeader"

    def __init__(self, header: str) -> None:
        super().__init__(f"required HTTP header {header} was not specified")


class PathNotSupported(FcError):
    http_status, code = 400, "PathNotSupported"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"'{method}' against '{path}' is not supported")


class EntityTooLarge(FcError):
    http_status, code = 400, "EntityTooLarge"

    def __init__(self, limit: int) -> None:
        super().__init__(f"payload size exceeds maximum allowed size ({limit} bytes)")


class AccessDenied(FcError):
    http_status, code, message = 403, "AccessDenied", "access denied"


class SignatureNotMatch(FcError):
    http_status, code, message = (
        403,
        "SignatureNotMatch",
        "The request signature we calculated does not match the signature you "
        "provided. Check your access key and signing method",
    )


class InvalidAccessKeyID(FcError):
    http_status, code = 403, "InvalidAccessKeyID"

    def __init__(self, access_key_id: str) -> None:
        super().__init__(f"invalid access key ID '{access_key_id}'")


class FunctionNotFound(FcError):
    http_status, code = 404, "FunctionNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(f"function '{name}' does not exist.")


class AliasNotFound(FcError):
    http_status, code = 404, "AliasNotFound"

    def __init__(self, alias: str, function: str) -> None:
        super().__init__(f"alias '{alias}' of function '{function}' does not exist")


class VersionNotFound(FcError):
    http_status, code = 404, "VersionNotFound"

    def __init__(self, version: str, function: str) -> None:
        super().__init__(f"version '{version}' of function '{function}' does not exist")


class ResourceExhausted(FcError):
    http_status, code, message = 429, "ResourceExhausted", "concurrency limit exceeded"


class InternalServerError(FcError):
    http_status, code, message = 500, "InternalServerError", "an internal error has occurred. Please retry."


class ResourceThrottled(FcError):
    http_status, code, message = 503, "ResourceThrottled", "resources are being throttled"


#: the system errors ``FcBackend.fail_next`` can inject. Of these FC retries an async invocation only for
#: "concurrency limit exceeded" (429 ResourceExhausted, backoff for up to 5 h); an internal error (500) and
#: insufficient resources (503 ResourceThrottled) are not retried (FC3 "Configure a retry mechanism",
#: https://www.alibabacloud.com/help/en/functioncompute/fc/error-handling-1-2; the older "Retry policies"
#: page gives the statuses: 429 throttled, 500 system error, 503 insufficient resources)
SYSTEM_ERRORS: dict[str, type[FcError]] = {
    "ResourceExhausted": ResourceExhausted,
    "InternalServerError": InternalServerError,
    "ResourceThrottled": ResourceThrottled,
}


def system_error(code: str, message: str | None = None) -> FcError:
    """An injected system error: a known code keeps its status; any other code is a 500."""
    known = SYSTEM_ERRORS.get(code)
    if known is not None:
        return known(message)
    return FcError(message or code, code=code, http_status=500)


RETRIED_SYSTEM_ERRORS = frozenset({"ResourceExhausted"})


def is_retried_system_error(error: FcError) -> bool:
    """Whether FC retries an async invocation after this system error (see SYSTEM_ERRORS)."""
    return error.code in RETRIED_SYSTEM_ERRORS
