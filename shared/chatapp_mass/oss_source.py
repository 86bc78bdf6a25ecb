"""Recipient files in OSS, through the official ``oss2`` SDK, wrapped once.

``oss://BUCKET/KEY`` names an object. The object is streamed (never downloaded whole): ``open()`` yields a
binary file-like object that the CSV reader consumes line by line.

- Endpoint: ``CHATAPP_OSS_ENDPOINT`` (``http://127.0.0.1:PORT`` for the local cloud), else the region's
  public endpoint ``https://oss-REGION.aliyuncs.com`` (inside Function Compute set the internal one,
  ``https://oss-REGION-internal.aliyuncs.com``, to keep traffic off the internet).
- Credentials: the Alibaba Cloud default chain (FC's role STS variables included), refreshed as they
  expire, or explicit ones from the composition root. V1 signatures (``oss2.ProviderAuth``).
- A missing object or bucket, or a refused request, raises :class:`SourceError` naming the URL and what
  to do; the CLI reports it like an unreadable file (exit 2, nothing sent).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import IO, Any, Iterator, Mapping, Optional
from urllib.parse import unquote

from chatapp_mass import env
from chatapp_mass.errors import ChatAppMassError, OptionsError


class SourceError(ChatAppMassError):
    """The recipient file could not be read from where it was said to be.

    ``code`` is OSS's error code ("" when OSS could not be reached); ``permanent`` says whether trying again
    later could help (a missing object or a refusal will not; an unreachable or busy service may).
    """

    PERMANENT = frozenset({"NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId",
                           "SignatureDoesNotMatch", "InvalidObjectName"})

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code

    @property
    def permanent(self) -> bool:
        return self.code in self.PERMANENT


@dataclass(frozen=True)
class OssLocation:
    bucket: str
    key: str

    @property
    def url(self) -> str:
        return f"oss://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, url: str) -> "OssLocation":
        if not url.startswith("oss://"):
            raise OptionsError(f"{url!r}: an OSS object is oss://BUCKET/KEY")
        bucket, _, key = url[len("oss://"):].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise OptionsError(f"{url!r}: give the bucket and the object key, e.g. oss://my-bucket/lists/march.csv")
        return cls(bucket, unquote(key) if "%" in key else key)


def oss_endpoint(environ: Mapping[str, str] = os.environ) -> str:
    endpoint = environ.get(env.CHATAPP_OSS_ENDPOINT, "").strip()
    if endpoint:
        return endpoint.rstrip("/")
    region = environ.get(env.ALIBABA_CLOUD_REGION_ID) or env.DEFAULT_REGION
    return f"https://oss-{region}.aliyuncs.com"


def _default_chain_provider() -> Any:
    from alibabacloud_credentials.client import Client as CredentialClient
    from oss2.credentials import Credentials, CredentialsProvider

    chain = CredentialClient()

    class _ChainProvider(CredentialsProvider):  # type: ignore[misc]
        def get_credentials(self) -> Any:
            current = chain.get_credential()
            return Credentials(current.access_key_id, current.access_key_secret, current.security_token or "")

    return _ChainProvider()


class OssClient:
    """One ``oss2`` auth per process; one ``oss2.Bucket`` per bucket name."""

    def __init__(self, endpoint: str, *, access_key_id: str = "", access_key_secret: str = "",
                 security_token: str = "", connect_timeout: float = 10.0) -> None:
        import oss2

        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        if access_key_id:
            provider = oss2.credentials.StaticCredentialsProvider(access_key_id, access_key_secret,
                                                                  security_token or "")
        else:
            provider = _default_chain_provider()
        self._auth = oss2.ProviderAuth(provider)
        self._buckets: dict[str, Any] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "OssClient":
        return cls(oss_endpoint(environ))

    def bucket(self, name: str) -> Any:
        import oss2

        if name not in self._buckets:
            # enable_crc=False: oss2 only compares the CRC in get_object_to_file, yet computes it on every
            # streamed read and upload; without crcmod's C extension (FC's runtime) that is ~5 MB/s of CPU.
            self._buckets[name] = oss2.Bucket(self._auth, self.endpoint, name, connect_timeout=self.connect_timeout,
                                              enable_crc=False)
        return self._buckets[name]

    @contextlib.contextmanager
    def open(self, location: OssLocation) -> Iterator[IO[bytes]]:
        """The object as a stream; closed on exit."""
        import oss2

        try:
            stream = self.bucket(location.bucket).get_object(location.key)
        except oss2.exceptions.OssError as error:
            raise SourceError(_explain(location, error), getattr(error, 'code', '') or '') from None
        except oss2.exceptions.RequestError as error:
            raise SourceError(f"{location.url}: OSS at {self.endpoint} cannot be reached ({error}); check "
                              f"{env.CHATAPP_OSS_ENDPOINT} and the network") from None
        try:
            yield stream  # type: ignore[misc]
        finally:
            stream.close()

    def head(self, location: OssLocation) -> dict[str, Any]:
        """ETag, size and user metadata (``x-oss-meta-*``, names lower-case without the prefix)."""
        import oss2

        try:
            result = self.bucket(location.bucket).head_object(location.key)
        except oss2.exceptions.OssError as error:
            raise SourceError(_explain(location, error), getattr(error, 'code', '') or '') from None
        meta = {k[len("x-oss-meta-"):].lower(): v for k, v in result.headers.items()
                if k.lower().startswith("x-oss-meta-")}
        return {"etag": (result.etag or "").strip('"'), "size": result.content_length, "meta": meta}

    def put(self, location: OssLocation, data: bytes | IO[bytes], *,
            metadata: Optional[Mapping[str, str]] = None, content_type: str = "text/csv") -> str:
        """Upload (reports and error reports); returns the ETag."""
        import oss2

        headers = {"Content-Type": content_type}
        headers.update({f"x-oss-meta-{k}": v for k, v in (metadata or {}).items()})
        try:
            result = self.bucket(location.bucket).put_object(location.key, data, headers=headers)
        except oss2.exceptions.OssError as error:
            raise SourceError(_explain(location, error), getattr(error, 'code', '') or '') from None
        return str(result.etag or "").strip('"')


def _explain(location: OssLocation, error: Any) -> str:
    code = getattr(error, "code", "") or type(error).__name__
    status = getattr(error, "status", "")
    fixes = {
        "NoSuchKey": "check the key (keys are case-sensitive) or upload the file first",
        "NoSuchBucket": "check the bucket name and the region of the endpoint",
        "AccessDenied": "the credentials lack oss:GetObject/PutObject on this bucket; grant it to the role",
        "InvalidAccessKeyId": "the access key is unknown: check the credentials",
        "SignatureDoesNotMatch": "the secret does not match the access key: check the credentials",
    }
    fix = fixes.get(code, "see the OSS error code")
    return f"{location.url}: OSS answered {status} {code}: {getattr(error, 'message', '') or error}; {fix}"
