"""The local OSS's multipart upload, CopyObject and empty objects, driven by the REAL ``oss2`` SDK over HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
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
from oss2.models import PartInfo  # noqa: E402

from alibaba_localcloud.oss import LocalOss  # noqa: E402
from alibaba_localcloud.oss.models import MIN_PART_SIZE  # noqa: E402

BUCKET = "chatapp-mass"
ODD_KEY = "incoming/März 2024/recipients list ü+1.csv"
KB100 = 100 * 1024


@pytest.fixture
def local_oss() -> Iterator[LocalOss]:
    with LocalOss(seed=11) as oss:
        yield oss


@pytest.fixture
def bucket(local_oss: LocalOss) -> Iterator[Any]:
    bucket = local_oss.oss2_bucket()
    yield bucket
    bucket.session.session.close()  # its pooled connection: left to the collector, a later test saw the warning


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


def multipart_etag(parts: list[bytes]) -> str:
    """S3's rule, which the emulator follows (the hex part is an ASSUMPTION for OSS; the -N form is not)."""
    return (
        hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest().upper() + f"-{len(parts)}"
    )


def names(oss: LocalOss) -> list[str]:
    return [event["events"][0]["eventName"] for event in oss.backend.events]


def upload_parts(bucket: Any, key: str, upload_id: str, parts: list[bytes], first: int = 1) -> list[PartInfo]:
    infos = []
    for number, data in enumerate(parts, start=first):
        result = bucket.upload_part(key, upload_id, number, data)
        assert result.etag == md5_hex(data)
        infos.append(PartInfo(number, result.etag, size=len(data), part_crc=result.crc))
    return infos


# --- multipart, step by step ------------------------------------------------------------------------------
def test_multipart_step_by_step(local_oss: LocalOss, bucket: Any) -> None:
    key = "incoming/big.csv"
    parts = [os.urandom(KB100), os.urandom(KB100 + 7), b"the last part may be small"]
    init = bucket.init_multipart_upload(key, headers={"Content-Type": "text/csv", "x-oss-meta-rows": "3"})
    assert re.fullmatch(r"[0-9A-F]{32}", init.upload_id)
    assert not bucket.object_exists(key)  # nothing until completion
    infos = upload_parts(bucket, key, init.upload_id, parts)
    listed = bucket.list_parts(key, init.upload_id)
    assert [(p.part_number, p.etag, p.size) for p in listed.parts] == [
        (i.part_number, i.etag, i.size) for i in infos
    ]
    assert not listed.is_truncated
    uploads = bucket.list_multipart_uploads(prefix="incoming/")
    assert [(u.key, u.upload_id) for u in uploads.upload_list] == [(key, init.upload_id)]
    assert local_oss.backend.events == []  # parts emit nothing

    done = bucket.complete_multipart_upload(key, init.upload_id, infos)  # oss2 checks the combined CRC-64
    assert done.status == 200
    assert done.etag == multipart_etag(parts)
    head = bucket.head_object(key)
    assert head.etag == multipart_etag(parts) and head.object_type == "Multipart"
    assert head.content_length == sum(map(len, parts))
    assert head.content_type == "text/csv" and head.headers["x-oss-meta-rows"] == "3"
    assert "Content-MD5" not in head.headers  # a multipart object has no MD5 of its whole content
    assert bucket.get_object(key).read() == b"".join(parts)
    assert bucket.get_object(key, byte_range=(KB100 - 2, KB100 + 1)).read() == parts[0][-2:] + parts[1][:2]

    [event] = local_oss.backend.events
    record = event["events"][0]
    assert record["eventName"] == "ObjectCreated:CompleteMultipartUpload"
    assert record["oss"]["object"] == {
        "key": key,
        "eTag": multipart_etag(parts),
        "size": head.content_length,
        "deltaSize": head.content_length,
    }
    assert record["responseElements"]["requestId"] == done.request_id
    with pytest.raises(oe.NoSuchUpload):  # the upload is gone once completed
        bucket.list_parts(key, init.upload_id)
    assert bucket.list_multipart_uploads().upload_list == []
    part_files = [p for p in Path(local_oss.backend.root, "objects").rglob("*") if p.is_file()]
    assert len(part_files) == 1  # the parts' files are gone, only the object's remains
    assert [r.operation for r in local_oss.backend.requests] == (
        ["InitiateMultipartUpload", "GetObjectMeta"]
        + ["UploadPart"] * 3
        + [
            "ListParts",
            "ListMultipartUploads",
            "CompleteMultipartUpload",
            "HeadObject",
            "GetObject",
            "GetObject",
            "ListParts",
            "ListMultipartUploads",
        ]
    )


def test_reuploading_a_part_replaces_it_and_parts_need_not_be_consecutive(bucket: Any) -> None:
    key = "k.bin"
    upload_id = bucket.init_multipart_upload(key).upload_id
    first = os.urandom(KB100)
    upload_parts(bucket, key, upload_id, [os.urandom(KB100)])
    [again] = upload_parts(bucket, key, upload_id, [first])  # part 1 again: the latest wins
    [last] = upload_parts(bucket, key, upload_id, [b"end"], first=5)
    assert [p.part_number for p in bucket.list_parts(key, upload_id).parts] == [1, 5]
    bucket.complete_multipart_upload(key, upload_id, [again, last])
    assert bucket.get_object(key).read() == first + b"end"


def test_complete_refuses_what_the_docs_refuse(local_oss: LocalOss, bucket: Any) -> None:
    key = "refused.bin"
    upload_id = bucket.init_multipart_upload(key).upload_id
    infos = upload_parts(bucket, key, upload_id, [os.urandom(KB100), os.urandom(KB100), b"tail"])

    with pytest.raises(oe.ServerError) as wrong_etag:
        bucket.complete_multipart_upload(key, upload_id, [infos[0], PartInfo(2, md5_hex(b"other")), infos[2]])
    assert (wrong_etag.value.status, wrong_etag.value.code) == (400, "InvalidPart")
    with pytest.raises(oe.ServerError) as missing:
        bucket.complete_multipart_upload(key, upload_id, [infos[0], PartInfo(7, infos[1].etag)])
    assert missing.value.code == "InvalidPart"

    # oss2 sorts the parts it sends; the order rule is checked on a body written by hand
    body = (
        "<CompleteMultipartUpload>"
        + "".join(
            f'<Part><PartNumber>{p.part_number}</PartNumber><ETag>"{p.etag}"</ETag></Part>'
            for p in (infos[1], infos[0], infos[2])
        )
        + "</CompleteMultipartUpload>"
    )
    with pytest.raises(oe.ServerError) as order:
        bucket._Bucket__do_object("POST", key, params={"uploadId": upload_id}, data=body)
    assert (order.value.status, order.value.code) == (400, "InvalidPartOrder")
    with pytest.raises(oe.MalformedXml):
        bucket._Bucket__do_object("POST", key, params={"uploadId": upload_id}, data="<not xml")

    small_id = bucket.init_multipart_upload(key).upload_id
    small = upload_parts(bucket, key, small_id, [b"x" * (KB100 - 1), b"y"])  # UploadPart accepts it...
    with pytest.raises(oe.ServerError) as too_small:
        bucket.complete_multipart_upload(key, small_id, small)  # ...completion refuses it
    assert (too_small.value.status, too_small.value.code) == (400, "EntityTooSmall")
    assert not bucket.object_exists(key) and local_oss.backend.events == []

    bucket.complete_multipart_upload(key, upload_id, infos)  # a refused completion leaves the upload usable
    assert bucket.head_object(key).etag == multipart_etag(
        [
            local_oss.backend.get_object_bytes(BUCKET, key)[i:j]
            for i, j in ((0, KB100), (KB100, 2 * KB100), (2 * KB100, 2 * KB100 + 4))
        ]
    )


def test_part_numbers_and_unknown_uploads(bucket: Any) -> None:
    key = "n.bin"
    upload_id = bucket.init_multipart_upload(key).upload_id
    for number in (0, 10001):
        with pytest.raises(oe.InvalidArgument) as bad:
            bucket.upload_part(key, upload_id, number, b"x")
        assert bad.value.details["ArgumentName"] == "partNumber"
    with pytest.raises(oe.NoSuchUpload):
        bucket.upload_part(key, "0" * 32, 1, b"x")
    with pytest.raises(oe.NoSuchUpload):  # an upload id belongs to its key
        bucket.upload_part("other-key", upload_id, 1, b"x")
    with pytest.raises(oe.NoSuchUpload):
        bucket.complete_multipart_upload(key, "0" * 32, [PartInfo(1, md5_hex(b"x"))])


def test_abort_drops_the_upload_and_its_parts(local_oss: LocalOss, bucket: Any) -> None:
    key = "aborted.bin"
    upload_id = bucket.init_multipart_upload(key).upload_id
    infos = upload_parts(bucket, key, upload_id, [os.urandom(KB100), b"z"])
    assert bucket.abort_multipart_upload(key, upload_id).status == 204
    with pytest.raises(oe.NoSuchUpload):
        bucket.list_parts(key, upload_id)
    with pytest.raises(oe.NoSuchUpload):
        bucket.complete_multipart_upload(key, upload_id, infos)
    with pytest.raises(oe.NoSuchUpload):
        bucket.abort_multipart_upload(key, upload_id)
    assert not [p for p in Path(local_oss.backend.root, "objects").rglob("*") if p.is_file()]
    assert local_oss.backend.events == []


def test_list_parts_pages(bucket: Any) -> None:
    key = "paged.bin"
    upload_id = bucket.init_multipart_upload(key).upload_id
    upload_parts(bucket, key, upload_id, [bytes([n]) * 10 for n in range(5)])
    first = bucket.list_parts(key, upload_id, max_parts=2)
    assert [p.part_number for p in first.parts] == [1, 2] and first.is_truncated and first.next_marker == "2"
    rest = bucket.list_parts(key, upload_id, marker=first.next_marker, max_parts=10)
    assert [p.part_number for p in rest.parts] == [3, 4, 5] and not rest.is_truncated
    assert [p.part_number for p in oss2.PartIterator(bucket, key, upload_id, max_parts=2)] == [1, 2, 3, 4, 5]


def test_complete_all_joins_every_uploaded_part(bucket: Any) -> None:
    key = "all.bin"
    upload_id = bucket.init_multipart_upload(key).upload_id
    parts = [os.urandom(KB100), b"last"]
    upload_parts(bucket, key, upload_id, parts)
    result = bucket.complete_multipart_upload(key, upload_id, None, headers={"x-oss-complete-all": "yes"})
    assert result.etag == multipart_etag(parts)
    assert bucket.get_object(key).read() == b"".join(parts)


def test_resumable_upload_with_small_parts(local_oss: LocalOss, bucket: Any, tmp_path: Path) -> None:
    data = os.urandom(3 * KB100 + 1234)
    path = tmp_path / "list.csv"
    path.write_bytes(data)
    store = oss2.ResumableStore(root=str(tmp_path / "records"))
    result = oss2.resumable_upload(
        bucket,
        ODD_KEY,
        str(path),
        store=store,
        multipart_threshold=KB100,
        part_size=KB100,
        num_threads=2,
        headers={"Content-Type": "text/csv"},
    )
    parts = [data[i : i + KB100] for i in range(0, len(data), KB100)]
    assert len(parts) == 4 and result.etag == multipart_etag(parts)
    assert bucket.get_object(ODD_KEY).read() == data
    assert names(local_oss) == ["ObjectCreated:CompleteMultipartUpload"]
    assert local_oss.backend.events[0]["events"][0]["oss"]["object"]["key"] == ODD_KEY
    operations = [r.operation for r in local_oss.backend.requests]
    assert operations.count("UploadPart") == 4 and operations[0] == "InitiateMultipartUpload"
    assert operations.index("CompleteMultipartUpload") == len(operations) - 2  # then the GetObject above


def test_the_minimum_part_size_is_configurable(tmp_path: Path) -> None:
    assert MIN_PART_SIZE == 102400
    with LocalOss(min_part_size=4) as oss:
        bucket = oss.oss2_bucket()
        upload_id = bucket.init_multipart_upload("k").upload_id
        infos = upload_parts(bucket, "k", upload_id, [b"1234", b"5"])
        bucket.complete_multipart_upload("k", upload_id, infos)
        assert bucket.get_object("k").read() == b"12345"


def test_uploads_keep_a_bucket_from_being_deleted(local_oss: LocalOss) -> None:
    service = oss2.Service(local_oss.oss2_bucket().auth, local_oss.endpoint)
    assert service is not None
    bucket = local_oss.oss2_bucket("second-bucket")
    bucket.create_bucket()
    upload_id = bucket.init_multipart_upload("k").upload_id
    with pytest.raises(oe.BucketNotEmpty):
        bucket.delete_bucket()
    bucket.abort_multipart_upload("k", upload_id)
    bucket.delete_bucket()


# --- CopyObject -------------------------------------------------------------------------------------------
def test_copy_object_copies_metadata_by_default_and_replaces_on_request(
    local_oss: LocalOss, bucket: Any
) -> None:
    data = b"to,name\n8613800000000,Ann\n"
    put = bucket.put_object("lists/a.csv", data, headers={"Content-Type": "text/csv", "x-oss-meta-job": "1"})
    copied = bucket.copy_object(BUCKET, "lists/a.csv", "incoming/a.csv")
    assert copied.status == 200 and copied.etag == put.etag
    head = bucket.head_object("incoming/a.csv")
    assert head.content_type == "text/csv" and head.headers["x-oss-meta-job"] == "1"
    assert bucket.get_object("incoming/a.csv").read() == data

    bucket.copy_object(
        BUCKET,
        "lists/a.csv",
        "incoming/b.csv",
        headers={
            "x-oss-metadata-directive": "REPLACE",
            "Content-Type": "application/json",
            "x-oss-meta-new": "2",
        },
    )
    replaced = bucket.head_object("incoming/b.csv")
    assert replaced.content_type == "application/json" and replaced.headers["x-oss-meta-new"] == "2"
    assert "x-oss-meta-job" not in replaced.headers
    # COPY ignores the request's metadata
    bucket.copy_object(BUCKET, "lists/a.csv", "incoming/c.csv", headers={"x-oss-meta-new": "3"})
    assert "x-oss-meta-new" not in bucket.head_object("incoming/c.csv").headers

    bucket.delete_object("lists/a.csv")  # the copies are objects of their own
    assert bucket.get_object("incoming/a.csv").read() == data
    events = [e["events"][0] for e in local_oss.backend.events]
    assert [e["eventName"] for e in events] == ["ObjectCreated:PutObject"] + ["ObjectCreated:CopyObject"] * 3
    assert events[1]["oss"]["object"] == {
        "key": "incoming/a.csv",
        "eTag": md5_hex(data),
        "size": len(data),
        "deltaSize": len(data),
    }
    assert events[1]["responseElements"]["requestId"] == copied.request_id


def test_copy_object_onto_itself_changes_metadata_only(local_oss: LocalOss, bucket: Any) -> None:
    bucket.put_object(ODD_KEY, b"body", headers={"x-oss-meta-a": "1"})
    blob = local_oss.backend.object_info(BUCKET, ODD_KEY).blob
    bucket.update_object_meta(ODD_KEY, {"x-oss-meta-b": "2"})  # oss2: CopyObject onto itself, REPLACE
    head = bucket.head_object(ODD_KEY)
    assert head.headers.get("x-oss-meta-b") == "2" and "x-oss-meta-a" not in head.headers
    assert local_oss.backend.object_info(BUCKET, ODD_KEY).blob == blob  # the content was not copied
    assert bucket.get_object(ODD_KEY).read() == b"body"


def test_copy_object_errors(bucket: Any) -> None:
    with pytest.raises(oe.NoSuchKey):
        bucket.copy_object(BUCKET, "missing", "target")
    with pytest.raises(oe.NoSuchBucket):
        bucket.copy_object("no-such-bucket", "k", "target")
    bucket.put_object("k", b"1")
    with pytest.raises(oe.InvalidArgument):
        bucket.copy_object(BUCKET, "k", "target", headers={"x-oss-metadata-directive": "MOVE"})
    bucket.put_object("target", b"2")
    with pytest.raises(oe.ServerError) as exists:
        bucket.copy_object(BUCKET, "k", "target", headers={"x-oss-forbid-overwrite": "true"})
    assert (exists.value.status, exists.value.code) == (409, "FileAlreadyExists")
    assert bucket.get_object("target").read() == b"2"


def test_copy_of_a_multipart_object(bucket: Any) -> None:
    upload_id = bucket.init_multipart_upload("mp").upload_id
    parts = [os.urandom(KB100), b"end"]
    bucket.complete_multipart_upload("mp", upload_id, upload_parts(bucket, "mp", upload_id, parts))
    bucket.copy_object(BUCKET, "mp", "mp-copy")
    assert bucket.get_object("mp-copy").read() == b"".join(parts)
    assert bucket.head_object("mp-copy").etag == multipart_etag(parts)


# --- empty objects ----------------------------------------------------------------------------------------
def test_empty_object_put_get_head_range_copy(local_oss: LocalOss, bucket: Any) -> None:
    put = bucket.put_object("empty.csv", b"")
    assert put.etag == md5_hex(b"")
    for _ in range(2):  # the connection is kept alive and stays usable
        got = bucket.get_object("empty.csv")
        assert got.read() == b"" and got.content_length == 0
    assert bucket.head_object("empty.csv").content_length == 0
    assert bucket.get_object("empty.csv", byte_range=(0, 10)).read() == b""
    bucket.copy_object(BUCKET, "empty.csv", "empty-copy.csv")
    assert bucket.get_object("empty-copy.csv").read() == b""
    assert bucket.put_object("after", b"x").status == 200
    assert local_oss.backend.events[0]["events"][0]["oss"]["object"]["size"] == 0


# --- event keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encode", [False, True])
def test_event_keys_raw_or_url_encoded_for_every_upload(encode: bool, tmp_path: Path) -> None:
    with LocalOss(url_encode_event_keys=encode) as oss:
        bucket = oss.oss2_bucket()
        bucket.put_object(ODD_KEY, b"1")
        bucket.copy_object(BUCKET, ODD_KEY, ODD_KEY + ".copy")
        upload_id = bucket.init_multipart_upload(ODD_KEY).upload_id
        bucket.complete_multipart_upload(ODD_KEY, upload_id, upload_parts(bucket, ODD_KEY, upload_id, [b"2"]))
        keys = [e["events"][0]["oss"]["object"]["key"] for e in oss.backend.events]
    expected = [ODD_KEY, ODD_KEY + ".copy", ODD_KEY]
    if encode:
        expected = [urllib.parse.quote_plus(k, safe="/") for k in expected]
        assert keys[0] == "incoming/M%C3%A4rz+2024/recipients+list+%C3%BC%2B1.csv"
    assert keys == expected
    assert [urllib.parse.unquote_plus(k) if encode else k for k in keys] == [
        ODD_KEY,
        ODD_KEY + ".copy",
        ODD_KEY,
    ]


def test_cli_flag_for_url_encoded_event_keys() -> None:
    import argparse

    from alibaba_localcloud.oss.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(["--url-encode-event-keys"]).url_encode_event_keys is True
    assert parser.parse_args([]).url_encode_event_keys is False
    assert parser.parse_args(["--min-part-size", "5"]).min_part_size == 5


def test_multipart_and_copy_under_v4_signatures(local_oss: LocalOss, tmp_path: Path) -> None:
    """The sub-resources (``uploads``, ``uploadId``, ``partNumber``) and ``x-oss-copy-source`` are signed too."""
    c = local_oss.credentials
    auth = oss2.StsAuth(c.access_key_id, c.access_key_secret, c.security_token, auth_version="v4")
    v4 = oss2.Bucket(auth, local_oss.endpoint, BUCKET, region=c.region_id)
    data = os.urandom(2 * KB100 + 5)
    path = tmp_path / "v4.csv"
    path.write_bytes(data)
    oss2.resumable_upload(
        v4,
        ODD_KEY,
        str(path),
        store=oss2.ResumableStore(root=str(tmp_path / "r")),
        multipart_threshold=KB100,
        part_size=KB100,
    )
    v4.copy_object(BUCKET, ODD_KEY, "copy of it.csv")
    assert v4.get_object("copy of it.csv").read() == data
    upload_id = v4.init_multipart_upload("aborted").upload_id
    assert [u.upload_id for u in v4.list_multipart_uploads().upload_list] == [upload_id]
    v4.abort_multipart_upload("aborted", upload_id)
    assert names(local_oss) == ["ObjectCreated:CompleteMultipartUpload", "ObjectCreated:CopyObject"]


def test_list_multipart_uploads_pages_by_key_then_upload(bucket: Any) -> None:
    ids = [bucket.init_multipart_upload(key).upload_id for key in ("a/1", "a/2", "a/2", "b/1")]
    first = bucket.list_multipart_uploads(prefix="a/", max_uploads=2)
    assert [u.key for u in first.upload_list] == ["a/1", "a/2"] and first.is_truncated
    assert first.next_key_marker == "a/2"
    rest = bucket.list_multipart_uploads(
        prefix="a/", key_marker=first.next_key_marker, upload_id_marker=first.next_upload_id_marker
    )
    assert [u.key for u in rest.upload_list] == ["a/2"] and not rest.is_truncated
    listed = {u.upload_id for u in oss2.MultipartUploadIterator(bucket, max_uploads=1)}
    assert listed == set(ids)


def test_complete_all_refuses_a_body(bucket: Any) -> None:
    upload_id = bucket.init_multipart_upload("k").upload_id
    infos = upload_parts(bucket, "k", upload_id, [b"1"])
    with pytest.raises(oe.InvalidArgument):
        bucket.complete_multipart_upload("k", upload_id, infos, headers={"x-oss-complete-all": "yes"})
