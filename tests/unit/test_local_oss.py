"""The local OSS, driven by the REAL ``oss2`` SDK over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The environment is set before the imports below (the SDKs read it when imported): hence their noqa: E402
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
for _proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    os.environ.pop(_proxy, None)

import oss2  # noqa: E402
from oss2 import exceptions as oe  # noqa: E402

from alibaba_localcloud.oss import LocalOss, OssBackend  # noqa: E402
from alibaba_localcloud.oss.exceptions import InvalidRange  # noqa: E402
from alibaba_localcloud.oss.models import resolve_range  # noqa: E402

BUCKET = "chatapp-mass"
ODD_KEY = "lists/März 2024/recipients list ü.csv"
REQUEST_ID = re.compile(r"[0-9A-F]{24}")
EVENT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# --- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture
def local_oss() -> Iterator[LocalOss]:
    with LocalOss(seed=7) as oss:
        yield oss


@pytest.fixture
def bucket(local_oss: LocalOss) -> Any:
    return local_oss.oss2_bucket()


def make_bucket(
    oss: LocalOss,
    *,
    name: str = BUCKET,
    access_key_id: str | None = None,
    secret: str | None = None,
    token: str | bool | None = True,
    v1: bool = False,
    **options: Any,
) -> Any:
    """A bucket signing V4 for the emulator's region (``v1``: the old scheme, refused unless allowed)."""
    c = oss.credentials
    security_token = c.security_token if token is True else (token or None)
    key_id, key_secret = access_key_id or c.access_key_id, secret or c.access_key_secret
    provider = oss2.credentials.StaticCredentialsProvider(key_id, key_secret, security_token or "")
    if v1:
        return oss2.Bucket(oss2.ProviderAuth(provider), oss.endpoint, name, **options)
    options.setdefault("region", c.region_id)
    return oss2.Bucket(oss2.ProviderAuthV4(provider), oss.endpoint, name, **options)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


# --- objects ----------------------------------------------------------------------------------------------
def test_put_get_head_delete_round_trip_with_metadata(local_oss: LocalOss, bucket: Any) -> None:
    data = b"to,name\n8613800000000,Ann\n"
    headers = {"Content-Type": "text/csv", "x-oss-meta-Job-Id": "job-42", "x-oss-meta-rows": "1"}
    put = bucket.put_object("lists/a.csv", data, headers=headers)
    assert put.status == 200
    assert put.etag == md5_hex(data)  # oss2 strips the quotes
    assert put.resp.headers["ETag"] == f'"{md5_hex(data)}"'
    assert REQUEST_ID.fullmatch(put.request_id)

    got = bucket.get_object("lists/a.csv")
    assert got.read() == data
    assert got.content_type == "text/csv"
    assert got.headers["x-oss-meta-job-id"] == "job-42"

    head = bucket.head_object("lists/a.csv")
    assert head.content_length == len(data)
    assert head.etag == md5_hex(data)
    assert head.object_type == "Normal"
    assert head.headers["x-oss-meta-job-id"] == "job-42" and head.headers["x-oss-meta-rows"] == "1"
    assert head.headers["Content-MD5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert abs(head.last_modified - time.time()) < 60
    assert REQUEST_ID.fullmatch(head.headers["x-oss-request-id"])
    assert head.headers["Date"].endswith("GMT")

    assert bucket.delete_object("lists/a.csv").status == 204
    with pytest.raises(oe.NoSuchKey):
        bucket.get_object("lists/a.csv")
    assert bucket.delete_object("lists/a.csv").status == 204  # deleting a missing key is not an error
    assert [r.operation for r in local_oss.backend.requests] == [
        "PutObject",
        "GetObject",
        "HeadObject",
        "DeleteObject",
        "GetObject",
        "DeleteObject",
    ]
    assert local_oss.backend.requests[4].status == 404 and local_oss.backend.requests[4].code == "NoSuchKey"


def test_overwrite_replaces_content_and_etag(bucket: Any, local_oss: LocalOss) -> None:
    bucket.put_object("k", b"first version")
    bucket.put_object("k", b"v2")
    assert bucket.get_object("k").read() == b"v2"
    assert bucket.head_object("k").etag == md5_hex(b"v2")
    blobs = list(Path(local_oss.backend.root, "objects").rglob("*"))
    assert len([p for p in blobs if p.is_file()]) == 1  # the old body is gone


def test_key_with_spaces_and_non_ascii(bucket: Any) -> None:
    bucket.put_object(ODD_KEY, "é,ü\n".encode())
    assert bucket.get_object(ODD_KEY).read() == "é,ü\n".encode()
    assert bucket.object_exists(ODD_KEY)
    assert [o.key for o in bucket.list_objects(prefix="lists/März").object_list] == [ODD_KEY]
    assert [o.key for o in bucket.list_objects_v2(prefix="lists/März").object_list] == [ODD_KEY]
    bucket.delete_object(ODD_KEY)
    assert not bucket.object_exists(ODD_KEY)


def test_no_such_key_and_no_such_bucket(local_oss: LocalOss, bucket: Any) -> None:
    with pytest.raises(oe.NoSuchKey) as missing_key:
        bucket.get_object("missing.csv")
    assert missing_key.value.status == 404 and missing_key.value.details["Key"] == "missing.csv"
    assert missing_key.value.request_id == local_oss.backend.requests[-1].request_id
    with pytest.raises(oe.NoSuchKey):  # HEAD has no body: the error travels in x-oss-err
        bucket.head_object("missing.csv")

    other = make_bucket(local_oss, name="no-such-bucket")
    with pytest.raises(oe.NoSuchBucket) as missing_bucket:
        other.put_object("a.csv", b"x" * 300_000)  # refused, body drained, connection still usable
    assert missing_bucket.value.details["BucketName"] == "no-such-bucket"
    with pytest.raises(oe.NoSuchBucket):
        other.get_object("a.csv")
    with pytest.raises(oe.NoSuchBucket):
        other.list_objects()
    assert local_oss.backend.keys(BUCKET) == []


def test_create_bucket_then_use_it(local_oss: LocalOss) -> None:
    fresh = make_bucket(local_oss, name="reports-2024")
    with pytest.raises(oe.NoSuchBucket):
        fresh.put_object("r.csv", b"1")
    assert fresh.create_bucket().status == 200
    assert fresh.create_bucket().status == 200  # again: the owner's existing bucket is kept
    fresh.put_object("r.csv", b"1")
    assert local_oss.backend.keys("reports-2024") == ["r.csv"]
    with pytest.raises(oe.BucketNotEmpty):
        fresh.delete_bucket()
    service = oss2.Service(local_oss.oss2_auth(), local_oss.endpoint, region=local_oss.credentials.region_id)
    names = [b.name for b in service.list_buckets().buckets]
    assert names == [BUCKET, "reports-2024"]


def test_content_md5_is_checked(local_oss: LocalOss, bucket: Any) -> None:
    data = b"payload"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    bucket.put_object("ok", data, headers={"Content-MD5": good})
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(oe.InvalidDigest):
        bucket.put_object("bad", data, headers={"Content-MD5": bad})
    with pytest.raises(oe.InvalidDigest):
        bucket.put_object("bad", data, headers={"Content-MD5": "not-base64!"})
    assert local_oss.backend.keys(BUCKET) == ["ok"]
    assert len(local_oss.backend.events) == 1


def test_forbid_overwrite(bucket: Any) -> None:
    bucket.put_object("once", b"1", headers={"x-oss-forbid-overwrite": "true"})
    with pytest.raises(oe.ServerError) as error:
        bucket.put_object("once", b"2", headers={"x-oss-forbid-overwrite": "true"})
    assert (error.value.status, error.value.code) == (409, "FileAlreadyExists")
    assert bucket.get_object("once").read() == b"1"


def test_chunked_upload_from_an_iterator(bucket: Any) -> None:
    parts = [b"a" * 70_000, b"b" * 5, b"c" * 100_000]
    bucket.put_object("chunked", iter(parts))  # no length: requests sends Transfer-Encoding: chunked
    assert bucket.get_object("chunked").read() == b"".join(parts)


# --- ranges -----------------------------------------------------------------------------------------------
def test_range_reads(bucket: Any) -> None:
    data = bytes(range(256)) * 4  # 1,024 bytes
    bucket.put_object("r", data)
    part = bucket.get_object("r", byte_range=(10, 19))
    assert part.status == 206 and part.read() == data[10:20]
    assert part.content_range == "bytes 10-19/1024"
    open_ended = bucket.get_object("r", byte_range=(1000, None))
    assert open_ended.status == 206 and open_ended.read() == data[1000:]
    suffix = bucket.get_object("r", byte_range=(None, 24))
    assert suffix.status == 206 and suffix.read() == data[-24:]
    assert suffix.content_range == "bytes 1000-1023/1024"


def test_invalid_range_returns_the_whole_object_unless_standard(bucket: Any) -> None:
    data = b"0123456789"
    bucket.put_object("r", data)
    for byte_range in ((5, 10), (10, 20), (10, None), (None, 20)):
        whole = bucket.get_object("r", byte_range=byte_range)
        assert (whole.status, whole.read(), whole.content_range) == (200, data, None)
    standard = {"x-oss-range-behavior": "standard"}
    clamped = bucket.get_object("r", byte_range=(5, 100), headers=standard)
    assert (clamped.status, clamped.read(), clamped.content_range) == (206, b"56789", "bytes 5-9/10")
    with pytest.raises(oe.ServerError) as error:
        bucket.get_object("r", byte_range=(10, 20), headers=standard)
    assert (error.value.status, error.value.code) == (416, "InvalidRange")


@pytest.mark.parametrize(
    ("header", "size", "standard", "expected"),
    [
        ("bytes=0-499", 1000, False, (0, 499)),
        ("bytes=500-", 1000, False, (500, 999)),
        ("bytes=-500", 1000, False, (500, 999)),
        ("bytes=0-", 1000, False, (0, 999)),
        ("bytes=0-1000", 1000, False, None),
        ("bytes=1000-2000", 1000, False, None),
        ("bytes=1000-", 1000, False, None),
        ("bytes=-2000", 1000, False, None),
        ("byte=0-499", 1000, False, None),
        ("bytes=5-3", 1000, False, None),
        ("bytes=0-1,5-9", 1000, False, (0, 1)),
        ("bytes=0-", 0, False, None),
        (None, 10, False, None),
        ("bytes=500-2000", 1000, True, (500, 999)),
        ("bytes=-2000", 1000, True, (0, 999)),
    ],
)
def test_resolve_range(header: str | None, size: int, standard: bool, expected: Any) -> None:
    assert resolve_range(header, size, standard=standard) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=1000-2000", 1000), ("bytes=0-", 0), ("bytes=0-1,4-5", 9), ("bytes=-0", 9)]
)
def test_resolve_range_standard_refusals(header: str, size: int) -> None:
    with pytest.raises(InvalidRange):
        resolve_range(header, size, standard=True)


# --- crc64 ------------------------------------------------------------------------------------------------
def test_crc64_header_matches_what_oss2_computes(local_oss: LocalOss, bucket: Any, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    put = bucket.put_object("crc.bin", data)  # oss2 compares the PUT's crc with its own
    crc = oss2.utils.Crc64()
    crc.update(data)
    assert put.crc == crc.crc
    target = tmp_path / "crc.bin"
    result = bucket.get_object_to_file("crc.bin", str(target))  # checks x-oss-hash-crc64ecma
    assert result.server_crc == crc.crc and target.read_bytes() == data

    # corrupt the stored body behind the emulator's back: the SDK's CRC check must catch it
    info = local_oss.backend.object_info(BUCKET, "crc.bin")
    assert info is not None
    blob = next(p for p in Path(local_oss.backend.root, "objects").rglob(info.blob))
    blob.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    with pytest.raises(oe.InconsistentError):
        bucket.get_object_to_file("crc.bin", str(target))


# --- listing ----------------------------------------------------------------------------------------------
KEYS = ["a.csv", "dir/1.csv", "dir/2.csv", "dir/sub/3.csv", "dir2/x.csv", "e f.csv", "z/ü.csv"]


@pytest.fixture
def filled(local_oss: LocalOss, bucket: Any) -> Any:
    for key in reversed(KEYS):
        local_oss.backend.put_object(BUCKET, key, key.encode(), notify=False)
    return bucket


def test_list_v1_prefix_and_pagination(filled: Any) -> None:
    first = filled.list_objects(max_keys=3)
    assert [o.key for o in first.object_list] == KEYS[:3]
    assert first.is_truncated and first.next_marker == "dir/2.csv"
    second = filled.list_objects(marker=first.next_marker, max_keys=3)
    assert [o.key for o in second.object_list] == KEYS[3:6]
    assert [o.key for o in oss2.ObjectIterator(filled, max_keys=2)] == KEYS
    assert [o.key for o in filled.list_objects(prefix="dir/").object_list] == [
        "dir/1.csv",
        "dir/2.csv",
        "dir/sub/3.csv",
    ]
    last = filled.list_objects(prefix="dir/", max_keys=3)
    assert not last.is_truncated
    info = filled.list_objects(prefix="a.").object_list[0]
    assert (info.size, info.etag, info.type, info.storage_class) == (
        5,
        md5_hex(b"a.csv"),
        "Normal",
        "Standard",
    )
    assert info.owner is not None and info.owner.id


def test_list_with_delimiter(filled: Any) -> None:
    top = filled.list_objects(delimiter="/")
    assert [o.key for o in top.object_list] == ["a.csv", "e f.csv"]
    assert top.prefix_list == ["dir/", "dir2/", "z/"]
    paged = [o.key for o in oss2.ObjectIterator(filled, delimiter="/", max_keys=1)]
    assert paged == ["a.csv", "dir/", "dir2/", "e f.csv", "z/"]
    inner = filled.list_objects_v2(prefix="dir/", delimiter="/")
    assert [o.key for o in inner.object_list] == ["dir/1.csv", "dir/2.csv"]
    assert inner.prefix_list == ["dir/sub/"]


def test_list_v2_continuation_and_start_after(filled: Any) -> None:
    page = filled.list_objects_v2(max_keys=4)
    assert [o.key for o in page.object_list] == KEYS[:4]
    assert page.is_truncated and page.next_continuation_token
    rest = filled.list_objects_v2(continuation_token=page.next_continuation_token, max_keys=4)
    assert [o.key for o in rest.object_list] == KEYS[4:] and not rest.is_truncated
    assert [o.key for o in oss2.ObjectIteratorV2(filled, max_keys=2)] == KEYS
    after = filled.list_objects_v2(start_after="dir/sub/3.csv")
    assert [o.key for o in after.object_list] == KEYS[4:]
    assert filled.list_objects_v2(max_keys=1).object_list[0].owner is None  # no fetch-owner
    assert filled.list_objects_v2(max_keys=1, fetch_owner=True).object_list[0].owner is not None
    with pytest.raises(oe.InvalidArgument):
        filled.list_objects_v2(max_keys=1001)


def test_list_many_keys_across_internal_batches(local_oss: LocalOss, bucket: Any) -> None:
    keys = sorted(f"bulk/{i:05d}" for i in range(1_050))  # more than one internal batch of 1,000
    for key in keys:
        local_oss.backend.put_object(BUCKET, key, b"", notify=False)
    local_oss.backend.put_object(BUCKET, "bulk0", b"", notify=False)
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="bulk/", max_keys=1000)] == keys
    assert bucket.list_objects(delimiter="/").prefix_list == ["bulk/"]


# --- authentication ---------------------------------------------------------------------------------------
def test_sts_token_is_required_and_checked(local_oss: LocalOss) -> None:
    c = local_oss.credentials
    assert c.security_token
    with pytest.raises(oe.ServerError) as no_token:
        make_bucket(local_oss, token=None).get_object("x")
    assert (no_token.value.status, no_token.value.code) == (403, "InvalidAccessKeyId")
    with pytest.raises(oe.ServerError) as wrong_token:
        make_bucket(local_oss, token="CAIS.not-the-token").get_object("x")
    assert (wrong_token.value.status, wrong_token.value.code) == (403, "InvalidSecurityToken")
    other = local_oss.backend.add_account("STS.other", "other-secret", "CAIS.other-token")
    with pytest.raises(oe.ServerError) as mismatch:
        make_bucket(local_oss, token=other.security_token).get_object("x")
    assert mismatch.value.code == "AccessKeyIdAndSecurityTokenNotMatch"
    with pytest.raises(oe.SignatureDoesNotMatch) as bad_secret:
        make_bucket(local_oss, secret="wrong-secret").get_object("x")
    assert (
        bad_secret.value.status == 403 and "/chatapp-mass/x" in bad_secret.value.details["CanonicalRequest"]
    )
    with pytest.raises(oe.ServerError) as unknown:
        make_bucket(local_oss, access_key_id="LTAI.unknown").get_object("x")
    assert (unknown.value.status, unknown.value.code) == (403, "InvalidAccessKeyId")
    with pytest.raises(oe.AccessDenied):
        oss2.Bucket(oss2.AnonymousAuth(), local_oss.endpoint, BUCKET).get_object("x")
    with pytest.raises(oe.NoSuchKey):  # the right credentials get past authentication
        make_bucket(local_oss).get_object("x")
    assert [r.code for r in local_oss.backend.requests] == [
        "InvalidAccessKeyId",
        "InvalidSecurityToken",
        "AccessKeyIdAndSecurityTokenNotMatch",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "NoSuchKey",
    ]


def test_long_term_keys_refuse_a_token() -> None:
    with LocalOss(sts=False) as oss:
        assert oss.credentials.security_token is None
        plain = make_bucket(oss, token=None)
        plain.put_object("k", b"1")
        with pytest.raises(oe.ServerError) as error:
            make_bucket(oss, token="CAIS.unexpected").get_object("k")
        assert error.value.code == "InvalidAccessKeyId"


def test_signature_covers_sub_resources_and_oss_headers(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object("k", b"1", headers={"x-oss-meta-a": "b"})
    assert (
        bucket.get_object("k", params={"response-content-type": "text/plain"}).headers["Content-Type"]
        == "text/plain"
    )
    url = bucket.sign_url("GET", "k", 60)
    assert "x-oss-signature-version=OSS4-HMAC-SHA256" in url
    with urllib.request.urlopen(url) as response:  # a V4 signed URL
        assert response.read() == b"1"
    tampered = url.replace("x-oss-signature=", "x-oss-signature=a")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(tampered)
    assert error.value.code == 403 and b"SignatureDoesNotMatch" in error.value.read()
    error.value.close()


def test_v4_signatures(local_oss: LocalOss) -> None:
    c = local_oss.credentials
    auth = oss2.StsAuth(c.access_key_id, c.access_key_secret, c.security_token, auth_version="v4")
    v4 = oss2.Bucket(auth, local_oss.endpoint, BUCKET, region=c.region_id)
    v4.put_object(ODD_KEY, b"v4", headers={"x-oss-meta-x": "y", "Content-Type": "text/csv"})
    assert v4.get_object(ODD_KEY, byte_range=(0, 0)).read() == b"v"
    assert [o.key for o in v4.list_objects_v2(prefix="lists/", max_keys=5).object_list] == [ODD_KEY]
    wrong = oss2.StsAuth(c.access_key_id, "nope", c.security_token, auth_version="v4")
    with pytest.raises(oe.SignatureDoesNotMatch):
        oss2.Bucket(wrong, local_oss.endpoint, BUCKET, region=c.region_id).get_object(ODD_KEY)
    with pytest.raises(oe.SignatureDoesNotMatch):
        oss2.Bucket(auth, local_oss.endpoint, BUCKET, region="cn-hangzhou").get_object(ODD_KEY)


def test_v4_requires_an_unsigned_payload_header(local_oss: LocalOss) -> None:
    class OtherPayload(oss2.ProviderAuthV4):  # type: ignore[misc]
        def __init__(self, provider: Any, value: str | None) -> None:
            super().__init__(provider)
            self.value = value

        def _sign_request(
            self, req: Any, bucket_name: Any, key: Any, in_additional_headers: Any = None
        ) -> None:
            super()._sign_request(req, bucket_name, key, in_additional_headers)
            if self.value is None:
                del req.headers["x-oss-content-sha256"]
            else:
                req.headers["x-oss-content-sha256"] = self.value

    c = local_oss.credentials
    provider = oss2.credentials.StaticCredentialsProvider(
        c.access_key_id, c.access_key_secret, c.security_token
    )
    for value in ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", None):
        bucket = oss2.Bucket(OtherPayload(provider, value), local_oss.endpoint, BUCKET, region=c.region_id)
        with pytest.raises(oe.ServerError) as error:
            bucket.get_object("x")
        assert (error.value.status, error.value.code, error.value.ec) == (
            400,
            "InvalidArgument",
            "0002-00000214",
        )


def test_v1_signatures_are_refused_as_by_a_new_bucket(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object("k", b"1")
    v1 = make_bucket(local_oss, v1=True)
    with pytest.raises(oe.AccessDenied) as header:
        v1.get_object("k")
    assert (header.value.status, header.value.ec) == (403, "0002-00000080")
    assert "V4" in header.value.message
    with pytest.raises(oe.AccessDenied):  # refused before the key is looked at: even a wrong secret is 403
        make_bucket(local_oss, v1=True, secret="wrong-secret").put_object("k", b"2")
    with pytest.raises(urllib.error.HTTPError) as url:
        urllib.request.urlopen(v1.sign_url("GET", "k", 60))  # a V1 signed URL
    body = url.value.read()
    url.value.close()
    assert (
        url.value.code == 403 and b"<Code>AccessDenied</Code>" in body and b"<EC>0002-00000080</EC>" in body
    )
    assert local_oss.backend.get_object_bytes(BUCKET, "k") == b"1"
    assert [r.code for r in local_oss.backend.requests][-3:] == ["AccessDenied"] * 3


def test_allow_v1_signatures_is_an_old_bucket() -> None:
    with LocalOss(allow_v1_signatures=True) as oss:
        v1 = make_bucket(oss, v1=True)
        v1.put_object("k", b"old")
        assert make_bucket(oss).get_object("k").read() == b"old"  # V4 still accepted
        with urllib.request.urlopen(v1.sign_url("GET", "k", 60)) as response:
            assert response.read() == b"old"
        with pytest.raises(oe.SignatureDoesNotMatch):  # and V1 still verified
            make_bucket(oss, v1=True, secret="wrong-secret").get_object("k")


def test_v4_signed_urls(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object(ODD_KEY, b"signed")
    url = bucket.sign_url("GET", ODD_KEY, 60)
    assert "x-oss-security-token=" in url and f"%2F{local_oss.credentials.region_id}%2Foss%2F" in url
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"signed"
    csv = {"Content-Type": "text/csv"}  # signed: a V4 URL covers content-type
    put = urllib.request.Request(
        bucket.sign_url("PUT", "up.csv", 60, headers=csv), data=b"to\n1\n", method="PUT", headers=csv
    )
    urllib.request.urlopen(put).close()
    assert local_oss.backend.get_object_bytes(BUCKET, "up.csv") == b"to\n1\n"

    def refused(target: str) -> tuple[int, bytes]:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(target)
        body = error.value.read()
        error.value.close()
        return error.value.code, body

    status, body = refused(url.replace("x-oss-security-token=", "x-oss-security-token=X"))
    assert status == 403 and b"InvalidSecurityToken" in body
    status, body = refused(make_bucket(local_oss, region="cn-hangzhou").sign_url("GET", ODD_KEY, 60))
    assert status == 403 and b"<EC>0002-00000228</EC>" in body
    status, body = refused(bucket.sign_url("GET", ODD_KEY, 7 * 24 * 3600 + 1))
    assert status == 400 and b"<EC>0002-00000232</EC>" in body
    status, body = refused(re.sub(r"x-oss-expires=\d+&?", "", url))
    assert status == 400 and b"<EC>0002-00000215</EC>" in body
    status, body = refused(re.sub(r"x-oss-signature=[0-9a-f]+", "x-oss-signature=", url))
    assert status == 400 and b"<EC>0002-00000220</EC>" in body
    status, body = refused(re.sub(r"&x-oss-signature=[0-9a-f]+", "", url))
    assert status == 400 and b"<EC>0002-00000219</EC>" in body


def test_v4_signed_url_expires() -> None:
    offset = {"seconds": 0.0}
    with LocalOss(clock=lambda: time.time() + offset["seconds"]) as oss:
        bucket = oss.oss2_bucket()
        bucket.put_object("k", b"1")
        url = bucket.sign_url("GET", "k", 60)
        offset["seconds"] = 120.0
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url)
        body = error.value.read()
        error.value.close()
        assert error.value.code == 403 and b"Request has expired." in body and b"0002-00000236" in body


def test_v4_signed_url_used_before_its_date_is_refused() -> None:
    """Up to 15 minutes early is a clock offset (allowed); more is refused, EC 0002-00000235."""
    offset = {"seconds": -14 * 60.0}
    with LocalOss(clock=lambda: time.time() + offset["seconds"]) as oss:
        bucket = oss.oss2_bucket()
        bucket.put_object("k", b"1")
        url = bucket.sign_url("GET", "k", 3600)
        with urllib.request.urlopen(url) as response:
            assert response.read() == b"1"
        offset["seconds"] = -16 * 60.0
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(url)
        body = error.value.read()
        error.value.close()
        assert error.value.code == 403 and b"<Code>AccessDenied</Code>" in body and b"0002-00000235" in body


def test_skewed_clock_is_refused() -> None:
    offset = {"seconds": 16 * 60.0}
    with LocalOss(clock=lambda: time.time() + offset["seconds"]) as oss:
        bucket = oss.oss2_bucket()
        with pytest.raises(oe.ServerError) as error:
            bucket.put_object("k", b"1")
        assert (error.value.status, error.value.code) == (403, "RequestTimeTooSkewed")
        assert error.value.details["MaxAllowedSkewMilliseconds"] == "900000"
        offset["seconds"] = 14 * 60.0
        bucket.put_object("k", b"1")


# --- events -----------------------------------------------------------------------------------------------
def test_event_format_and_one_call_per_put(local_oss: LocalOss, bucket: Any) -> None:
    received: list[dict[str, Any]] = []
    local_oss.backend.subscribe(received.append)
    put = bucket.put_object(ODD_KEY, b"12345")
    bucket.put_object(ODD_KEY, b"123")  # an overwrite is a new ObjectCreated event
    bucket.get_object(ODD_KEY).read()
    bucket.delete_object(ODD_KEY)
    assert len(received) == 2
    assert received == local_oss.backend.events
    event = received[0]
    record = event["events"][0]
    assert EVENT_TIME.fullmatch(record["eventTime"])
    account, region = local_oss.backend.account_id, local_oss.credentials.region_id
    assert event == {
        "events": [
            {
                "eventName": "ObjectCreated:PutObject",
                "eventSource": "acs:oss",
                "eventTime": record["eventTime"],
                "eventVersion": "1.0",
                "oss": {
                    "bucket": {
                        "arn": f"acs:oss:{region}:{account}:{BUCKET}",
                        "name": BUCKET,
                        "ownerIdentity": account,
                    },
                    "object": {"deltaSize": 5, "eTag": md5_hex(b"12345"), "key": ODD_KEY, "size": 5},
                    "ossSchemaVersion": "1.0",
                    "ruleId": record["oss"]["ruleId"],
                },
                "region": region,
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"requestId": put.request_id},
                "userIdentity": {"principalId": account},
            }
        ]
    }
    assert re.fullmatch(r"[0-9a-f]{40}", record["oss"]["ruleId"])
    assert received[1]["events"][0]["oss"]["object"] == {
        "deltaSize": -2,
        "eTag": md5_hex(b"123"),
        "key": ODD_KEY,
        "size": 3,
    }
    json.dumps(event)  # plain JSON, as FC delivers it


def test_subscriber_sees_the_stored_object_and_its_failure_does_not_fail_the_put(
    local_oss: LocalOss, bucket: Any
) -> None:
    seen: list[bytes] = []

    def reader(event: dict[str, Any]) -> None:
        key = event["events"][0]["oss"]["object"]["key"]
        seen.append(local_oss.backend.get_object_bytes(BUCKET, key))  # stored, and no lock held
        raise RuntimeError("subscriber bug")

    unsubscribe = local_oss.backend.subscribe(reader)
    bucket.put_object("k", b"body")
    assert seen == [b"body"]
    unsubscribe()
    bucket.put_object("k2", b"body")
    assert seen == [b"body"] and len(local_oss.backend.events) == 2


def test_threaded_event_delivery() -> None:
    with LocalOss(event_delivery="thread") as oss:
        threads: list[str] = []
        oss.backend.subscribe(lambda event: threads.append(threading.current_thread().name))
        bucket = oss.oss2_bucket()
        for i in range(3):
            bucket.put_object(f"k{i}", b"1")
        assert oss.backend.flush_events(5.0)
        assert threads == ["local-oss-events"] * 3


# --- persistence, large objects, faults --------------------------------------------------------------------
def test_restart_with_data_dir_keeps_buckets_and_objects(tmp_path: Path) -> None:
    with LocalOss(data_dir=str(tmp_path), buckets=(BUCKET, "second-bucket")) as first:
        first.oss2_bucket().put_object(ODD_KEY, b"kept", headers={"x-oss-meta-a": "1"})
        first.oss2_bucket("second-bucket").put_object("x", b"y")
    assert (tmp_path / "oss.sqlite3").exists()
    with LocalOss(data_dir=str(tmp_path), buckets=()) as second:
        bucket = second.oss2_bucket(BUCKET)
        assert bucket.get_object(ODD_KEY).read() == b"kept"
        assert bucket.head_object(ODD_KEY).headers["x-oss-meta-a"] == "1"
        assert second.backend.keys("second-bucket") == ["x"]
    with LocalOss() as temporary:
        root = temporary.backend.root
        temporary.oss2_bucket().put_object("k", b"1")
        assert Path(root).exists()
    assert not Path(root).exists()  # the private temporary directory is removed on stop


def test_large_object_is_streamed(bucket: Any, tmp_path: Path) -> None:
    source, target = tmp_path / "big.bin", tmp_path / "back.bin"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with source.open("wb") as handle:
        for i in range(50):
            chunk = bytes([i]) + block[1:]
            digest.update(chunk)
            handle.write(chunk)
    tracemalloc.start()
    try:
        with source.open("rb") as handle:
            bucket.put_object("big.bin", handle)
        bucket.get_object_to_file("big.bin", str(target))  # CRC-64 checked by the SDK
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"peak {peak:,} bytes: something held the object in memory"
    check = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
    assert bucket.head_object("big.bin").content_length == 50 * 1024 * 1024


def test_fail_next_and_slow_next(local_oss: LocalOss, bucket: Any) -> None:
    local_oss.backend.fail_next(1)
    with pytest.raises(oe.ServerError) as error:
        bucket.put_object("k", b"1")
    assert (error.value.status, error.value.code) == (500, "InternalError")
    assert local_oss.backend.keys(BUCKET) == [] and local_oss.backend.events == []
    local_oss.backend.fail_next(2, code="ServiceUnavailable", status=503)
    for _ in range(2):
        with pytest.raises(oe.ServerError) as unavailable:
            bucket.get_object("k")
        assert unavailable.value.status == 503
    bucket.put_object("k", b"1")

    local_oss.backend.slow_next(1, 0.4)
    started = time.monotonic()
    assert bucket.get_object("k").read() == b"1"
    assert time.monotonic() - started >= 0.4
    local_oss.backend.slow_next(1, 2.0)
    impatient = make_bucket(local_oss, connect_timeout=0.2)
    with pytest.raises(oe.RequestError):
        impatient.get_object("k")
    started = time.monotonic()
    assert bucket.get_object("k").read() == b"1"  # the delay was used up
    assert time.monotonic() - started < 0.4


def test_unsupported_operations(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object("k", b"1")
    upload_id = bucket.init_multipart_upload("big").upload_id
    with pytest.raises(oe.ServerError) as part_copy:  # UploadPartCopy: not emulated
        bucket.upload_part_copy(BUCKET, "k", (0, 0), "big", upload_id, 1)
    assert (part_copy.value.status, part_copy.value.code) == (501, "NotImplemented")
    with pytest.raises(oe.ServerError) as acl:
        bucket.put_object_acl("k", oss2.OBJECT_ACL_PRIVATE)
    assert acl.value.code == "NotImplemented"
    octet = {"Content-Type": "application/octet-stream"}
    request = urllib.request.Request(
        bucket.sign_url("POST", "k", 60, headers=octet), data=b"", method="POST", headers=octet
    )
    with pytest.raises(urllib.error.HTTPError) as post:
        urllib.request.urlopen(request)
    assert post.value.code == 405 and b"<Code>MethodNotAllowed</Code>" in post.value.read()
    post.value.close()


def test_concurrent_puts(local_oss: LocalOss) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            b = local_oss.oss2_bucket()
            for i in range(10):
                b.put_object(f"t{n}/{i}", f"{n}-{i}".encode())
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(local_oss.backend.keys(BUCKET)) == 60 and len(local_oss.backend.events) == 60
    assert local_oss.backend.get_object_bytes(BUCKET, "t3/7") == b"3-7"


def test_backend_helpers_and_reset(local_oss: LocalOss, bucket: Any) -> None:
    info = local_oss.backend.put_object(BUCKET, "seed.csv", "to\n1\n", metadata={"job": "j1"})
    assert info.etag == md5_hex(b"to\n1\n")
    assert bucket.head_object("seed.csv").headers["x-oss-meta-job"] == "j1"
    assert len(local_oss.backend.events) == 1
    local_oss.backend.fail_next(1)
    local_oss.backend.reset()
    assert local_oss.backend.keys(BUCKET) == [] and local_oss.backend.events == []
    assert local_oss.backend.requests == []
    bucket.put_object("after-reset", b"1")  # the pending failure was forgotten; the bucket kept


def test_admin_endpoint(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object("k", b"1")
    with urllib.request.urlopen(local_oss.endpoint + "/_localoss/requests") as response:
        assert [r["operation"] for r in json.load(response)] == ["PutObject"]
    config = urllib.request.Request(
        local_oss.endpoint + "/_localoss/config",
        method="POST",
        data=json.dumps({"fail_next": {"n": 1, "code": "AccessDenied", "status": 403}}).encode(),
    )
    urllib.request.urlopen(config).close()
    with pytest.raises(oe.AccessDenied):
        bucket.get_object("k")


def test_describe_and_constructor_rules(tmp_path: Path) -> None:
    with LocalOss(
        access_key_id="LTAI.fixed",
        access_key_secret="s3cret",
        data_dir=str(tmp_path),
        region_id="cn-hangzhou",
    ) as oss:
        described = oss.describe()
        assert described == {
            "service": "oss",
            "endpoint": oss.endpoint,
            "bucket": BUCKET,
            "buckets": [BUCKET],
            "region_id": "cn-hangzhou",
            "access_key_id": "LTAI.fixed",
            "access_key_secret": "s3cret",
            "security_token": None,
            "data_dir": str(tmp_path),
        }
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", oss.endpoint) and oss.host_port in oss.endpoint
    with pytest.raises(TypeError):
        LocalOss(backend=OssBackend(), data_dir=str(tmp_path))
    with pytest.raises(ValueError):
        LocalOss(access_key_id="only-the-id")
    with pytest.raises(ValueError):
        LocalOss(buckets=("Not_A_Bucket",))
    with pytest.raises(RuntimeError):
        _ = LocalOss().endpoint


def test_cli_prints_one_json_line_and_serves_until_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "alibaba_localcloud.oss",
            "--data",
            str(tmp_path),
            "--bucket",
            "cli-bucket",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        described = json.loads(process.stdout.readline())
        assert described["service"] == "oss" and described["buckets"] == ["cli-bucket"]
        provider = oss2.credentials.StaticCredentialsProvider(
            described["access_key_id"], described["access_key_secret"], described["security_token"]
        )
        oss2.Bucket(
            oss2.ProviderAuthV4(provider), described["endpoint"], "cli-bucket", region=described["region_id"]
        ).put_object("k", b"from the cli test")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert process.stdout.read() == ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    backend = OssBackend(data_dir=tmp_path)
    try:
        assert backend.get_object_bytes("cli-bucket", "k") == b"from the cli test"
    finally:
        backend.close()


def test_cli_allow_v1_signatures_flag() -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    process = subprocess.Popen(
        [sys.executable, "-m", "alibaba_localcloud.oss", "--allow-v1-signatures"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        described = json.loads(process.stdout.readline())
        v1 = oss2.Bucket(
            oss2.StsAuth(
                described["access_key_id"], described["access_key_secret"], described["security_token"]
            ),
            described["endpoint"],
            BUCKET,
        )
        v1.put_object("k", b"signed with V1")  # refused (403) without the flag
        assert v1.get_object("k").read() == b"signed with V1"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
