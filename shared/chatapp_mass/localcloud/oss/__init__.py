"""Local OSS: path-style buckets and objects over real HTTP for the real ``oss2`` SDK, with FC3 OSS events."""

from .exceptions import OssError
from .models import BucketInfo, ListPage, ObjectInfo, OssBackend, RecordedRequest, object_created_event
from .server import LocalOss

__all__ = [
    "BucketInfo",
    "ListPage",
    "LocalOss",
    "ObjectInfo",
    "OssBackend",
    "OssError",
    "RecordedRequest",
    "object_created_event",
]
