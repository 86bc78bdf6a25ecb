"""Local OSS: path-style buckets, objects, multipart uploads and copies over real HTTP for the real ``oss2``
SDK, with FC3 OSS events."""

from .exceptions import OssError
from .models import (
    BucketInfo,
    ListPage,
    MultipartUpload,
    ObjectInfo,
    OssBackend,
    PartInfo,
    RecordedRequest,
    object_created_event,
)
from .server import LocalOss

__all__ = [
    "BucketInfo",
    "ListPage",
    "LocalOss",
    "MultipartUpload",
    "ObjectInfo",
    "OssBackend",
    "OssError",
    "PartInfo",
    "RecordedRequest",
    "object_created_event",
]
