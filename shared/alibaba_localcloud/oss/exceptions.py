"""The error codes the local OSS answers with, as the real service spells them.

Every class carries ``(http_status, code, message)`` plus optional extra elements; the emulator turns one
into the body::

    <?xml version="1.0" encoding="UTF-8"?>
    <Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>
      <RequestId>...</RequestId><HostId>...</HostId><Key>a.csv</Key></Error>

with that HTTP status. A HEAD request gets no body: the same XML travels base64-encoded in the
``x-oss-err`` header, which ``oss2.exceptions.make_exception`` decodes (the SDK's ``object_exists`` comments
say the service does this for HEAD).

Provenance (keep it honest when you change it):

Verified — ``oss2`` 2.19.1 maps ``(status, code)`` to these classes (``oss2/exceptions.py``) and the OSS
error pages (help.aliyun.com "HTTP status code 403/404/405/416", "0002-000000xx", "0015-00000102") name them:
    NoSuchKey 404, NoSuchBucket 404, AccessDenied 403, SignatureDoesNotMatch 403, InvalidAccessKeyId 403
    ("The OSS Access Key Id you provided does not exist in our records." — also the answer to an STS key
    sent without its token, and to a token sent with a long-term key), InvalidSecurityToken 403
    ("The security token you provided is invalid."), AccessKeyIdAndSecurityTokenNotMatch 403,
    MethodNotAllowed 405, InvalidRange 416 ("The requested range cannot be satisfied"),
    InvalidDigest 400, InvalidArgument 400, InvalidObjectName 400, BucketNotEmpty 409,
    BucketAlreadyExists 409, RequestTimeTooSkewed 403 (15 minutes), EntityTooLarge 400,
    MissingContentLength 411, FileAlreadyExists 409 (``x-oss-forbid-overwrite``), InternalError 500.

Verified for multipart upload — OSS error pages: NoSuchUpload 404 ("The specified upload does not exist. The
upload ID may be invalid, or the upload may have been aborted or completed.", 0017-00000244; ``oss2``'s
``NoSuchUpload``), InvalidPart ("One or more of the specified parts could not be found or the specified
entity tag might not have matched the part's entity tag.", alibabacloud.com "How do I fix the InvalidPart
error"), InvalidPartOrder (parts not ascending, 0042-00000209), EntityTooSmall (a part but the last under
100 KB, 0042-00000213), MalformedXML 400 (``oss2``'s ``MalformedXml``).
ASSUMPTIONS: InvalidPart, InvalidPartOrder and EntityTooSmall are 400 (the pages name the codes, not the
status; 400 is the status of every request error on them); their messages beyond InvalidPart's are ours.

ASSUMPTIONS (no public source found):
    NotImplemented   501 for an operation the emulator does not implement (ACL, tagging, PostObject,
                     UploadPartCopy, ...). The real service implements them; the status is ours
                     (HTTP's "not implemented").
    Messages not quoted above are paraphrases in the service's style. The real bodies also carry an ``EC``
    element (a numeric diagnosis code); the emulator leaves it out rather than invent numbers.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from .._errors import ServiceError, error_for_code


class OssError(ServiceError):
    """Root of every error the local OSS answers with."""

    http_status: int = 500
    code: str = "InternalError"
    message: str = "We encountered an internal error. Please try again."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        http_status: int | None = None,
        **details: Any,
    ) -> None:
        #: extra elements of the error body, in order (``Key``, ``BucketName``, ``OSSAccessKeyId``, ...)
        self.details: dict[str, str] = {
            name: str(value) for name, value in details.items() if value is not None
        }
        #: nested XML after them (``AccessDeniedDetail`` of a RAM refusal), already escaped
        self.detail_xml = ""
        super().__init__(message, code=code, http_status=http_status)

    def with_detail(self, name: str, value: object) -> OssError:
        """Add one element to the error body (for names that are not identifiers, e.g. ``Content-MD5``)."""
        self.details[name] = str(value)
        return self


# --- 403: authentication ---------------------------------------------------------------------------------
class AccessDenied(OssError):
    http_status, code, message = (
        403,
        "AccessDenied",
        "You have no right to access this object because of bucket acl.",
    )


def ram_denied(action: str, no_permission_type: str, owner: str, principal: str) -> OssError:
    """A role's request its RAM policy does not allow: 403 ``AccessDenied`` with ``AccessDeniedDetail``.

    Source: OSS error page 0003-00000201 (alibabacloud.com/help/en/oss/support/0003-00000201): an explicit
    Deny answers "Access denied by bucket policy." with EC 0003-00000201 and an ``AccessDeniedDetail``
    (PolicyType, AuthPrincipalOwnerId, AuthPrincipalType, AuthPrincipalDisplayName, NoPermissionType,
    AuthAction). ASSUMPTIONS: an implicit deny (no Allow matched) answers the same code with the ACL message
    below, NoPermissionType ImplicitDeny and no EC (its EC page was not found); the principal type of a
    role's STS credentials is ``AssumedRoleUser``; no EncodedDiagnosticMessage."""
    explicit = no_permission_type == "ExplicitDeny"
    error = OssError(
        "Access denied by bucket policy." if explicit else AccessDenied.message,
        code="AccessDenied",
        http_status=403,
        **({"EC": "0003-00000201"} if explicit else {}),
    )
    rows = (
        ("PolicyType", "AccountLevelIdentityBasedPolicy"),
        ("AuthPrincipalOwnerId", owner),
        ("AuthPrincipalType", "AssumedRoleUser"),
        ("AuthPrincipalDisplayName", principal),
        ("NoPermissionType", no_permission_type),
        ("AuthAction", action),
    )
    error.detail_xml = (
        "<AccessDeniedDetail>"
        + "".join(f"<{name}>{escape(value)}</{name}>" for name, value in rows)
        + "</AccessDeniedDetail>"
    )
    return error


class InvalidAccessKeyId(OssError):
    http_status, code, message = (
        403,
        "InvalidAccessKeyId",
        "The OSS Access Key Id you provided does not exist in our records.",
    )


class InvalidSecurityToken(OssError):
    http_status, code, message = 403, "InvalidSecurityToken", "The security token you provided is invalid."


class AccessKeyIdAndSecurityTokenNotMatch(OssError):
    http_status, code, message = (
        403,
        "AccessKeyIdAndSecurityTokenNotMatch",
        "The OSS access key id and security token you provided does not match.",
    )


class SecurityTokenExpired(OssError):
    """Not raised by default: the emulator's tokens do not expire."""

    http_status, code, message = 403, "SecurityTokenExpired", "The security token you provided has expired."


class SignatureDoesNotMatch(OssError):
    http_status, code = 403, "SignatureDoesNotMatch"
    message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


class RequestTimeTooSkewed(OssError):
    http_status, code = 403, "RequestTimeTooSkewed"
    message = "The difference between the request time and the current time is too large."


# --- 404 -------------------------------------------------------------------------------------------------
class NoSuchBucket(OssError):
    http_status, code, message = 404, "NoSuchBucket", "The specified bucket does not exist."


class NoSuchKey(OssError):
    http_status, code, message = 404, "NoSuchKey", "The specified key does not exist."


class NoSuchUpload(OssError):
    http_status, code = 404, "NoSuchUpload"
    message = (
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have "
        "been aborted or completed."
    )


# --- 400 / 405 / 409 / 411 / 416 -------------------------------------------------------------------------
class MalformedXML(OssError):
    http_status, code = 400, "MalformedXML"
    message = "The XML you provided was not well-formed or did not validate against our published schema."


class InvalidPart(OssError):
    http_status, code = 400, "InvalidPart"
    message = (
        "One or more of the specified parts could not be found or the specified entity tag might not "
        "have matched the part's entity tag."
    )


class InvalidPartOrder(OssError):
    http_status, code = 400, "InvalidPartOrder"
    message = "The list of parts was not in ascending order. Parts must be ordered by part number."


class EntityTooSmall(OssError):
    http_status, code = 400, "EntityTooSmall"
    message = (
        "Your proposed upload is smaller than the minimum allowed size: every part but the last must "
        "be at least 100 KB."
    )


class InvalidArgument(OssError):
    http_status, code, message = 400, "InvalidArgument", "The argument is invalid."


class InvalidBucketName(OssError):
    http_status, code, message = 400, "InvalidBucketName", "The specified bucket is not valid."


class InvalidObjectName(OssError):
    http_status, code, message = 400, "InvalidObjectName", "The specified object is not valid."


class InvalidDigest(OssError):
    http_status, code, message = 400, "InvalidDigest", "The Content-MD5 you specified is not valid."


class EntityTooLarge(OssError):
    http_status, code, message = (
        400,
        "EntityTooLarge",
        "Your proposed upload exceeds the maximum allowed object size.",
    )


class MethodNotAllowed(OssError):
    http_status, code, message = (
        405,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
    )


class BucketAlreadyExists(OssError):
    http_status, code, message = 409, "BucketAlreadyExists", "The requested bucket name is not available."


class BucketNotEmpty(OssError):
    http_status, code, message = 409, "BucketNotEmpty", "The bucket you tried to delete is not empty."


class FileAlreadyExists(OssError):
    http_status, code, message = (
        409,
        "FileAlreadyExists",
        "The object you specified already exists and can not be overwritten.",
    )


class MissingContentLength(OssError):
    http_status, code, message = (
        411,
        "MissingContentLength",
        "You must provide the Content-Length HTTP header.",
    )


class InvalidRange(OssError):
    http_status, code, message = 416, "InvalidRange", "The requested range cannot be satisfied"


# --- 5xx -------------------------------------------------------------------------------------------------
class InternalError(OssError):
    http_status, code, message = 500, "InternalError", "We encountered an internal error. Please try again."


class NotImplementedByEmulator(OssError):
    """ASSUMPTION: 501 ``NotImplemented`` for what the emulator does not implement (see the module doc)."""

    http_status, code, message = 501, "NotImplemented", "The local OSS does not implement this operation."


class ServiceUnavailable(OssError):
    http_status, code, message = 503, "ServiceUnavailable", "Please reduce your request rate."


# Codes a test can name in ``fail_next`` without importing the classes.
KNOWN_ERRORS: dict[str, type[OssError]] = {
    cls.code: cls
    for cls in (
        AccessDenied,
        InvalidAccessKeyId,
        InvalidSecurityToken,
        AccessKeyIdAndSecurityTokenNotMatch,
        SecurityTokenExpired,
        SignatureDoesNotMatch,
        RequestTimeTooSkewed,
        NoSuchBucket,
        NoSuchKey,
        NoSuchUpload,
        MalformedXML,
        InvalidPart,
        InvalidPartOrder,
        EntityTooSmall,
        InvalidArgument,
        InvalidBucketName,
        InvalidObjectName,
        InvalidDigest,
        EntityTooLarge,
        MethodNotAllowed,
        BucketAlreadyExists,
        BucketNotEmpty,
        FileAlreadyExists,
        MissingContentLength,
        InvalidRange,
        InternalError,
        NotImplementedByEmulator,
        ServiceUnavailable,
    )
}


def error_for(code: str, message: str | None = None, http_status: int | None = None) -> OssError:
    """An error with ``code``; known codes keep their status and message unless overridden."""
    return error_for_code(OssError, KNOWN_ERRORS, 500, code, message, http_status)
