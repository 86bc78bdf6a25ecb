"""A world for testing the functions' cores in one process: the local OSS, Tablestore and CAMS through the
real SDKs, function invocations queued for the test to deliver by hand (duplicates and all)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from chatapp_mass.adapters.oss import OssClient
from chatapp_mass.entry.bootstrap import cams_client_for
from chatapp_mass.entry.localcloud import LocalCloud
from chatapp_mass.services.ingest import Ingest
from chatapp_mass.services.jobs import FunctionSettings
from chatapp_mass.services.sender import Sender
from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

#: the job options every CLI test sends with, as `send` flags
SEND_FLAGS = [
    "--channel-type",
    "whatsapp",
    "--template-code",
    "T1",
    "--language",
    "en",
    "--from",
    "8613800000000",
]
META = {
    "x-oss-meta-channel-type": "whatsapp",
    "x-oss-meta-template-code": "T_WELCOME",
    "x-oss-meta-language": "en",
    "x-oss-meta-from": "8613800000000",
}


class QueueInvoker:
    def __init__(self) -> None:
        self.queue: list[tuple[str, dict[str, Any], int]] = []

    def invoke_async(self, function: str, payload: dict[str, Any], *, delay: int = 0) -> None:
        assert len(json.dumps(payload)) < 1024, "a reference, never recipients"
        self.queue.append((function, payload, delay))


class World:
    def __init__(self, cloud: LocalCloud, **settings: Any) -> None:
        self.cloud = cloud
        creds = cloud.credentials
        keys = dict(
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
        )
        self.store = TablestoreStore(
            TablestoreSettings(
                endpoint=cloud.tablestore.endpoint,
                instance=cloud.instance,
                table_prefix=f"j{secrets.token_hex(3)}_",
            ),
            **keys,
        )
        self.oss = OssClient(cloud.oss.endpoint, region=creds.region_id, **keys)
        self.cams = cams_client_for(cloud.cams.endpoint, creds, region_id=creds.region_id)
        self.invoker = QueueInvoker()
        self.settings = FunctionSettings(bucket=cloud.bucket, **settings)
        self.bucket = cloud.oss.oss2_bucket(cloud.bucket)
        cloud.cams.backend.reset()

    def upload(self, key: str, data: bytes, meta: dict[str, str] | None = None) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        unsubscribe = self.cloud.oss.backend.subscribe(events.append)
        try:
            self.bucket.put_object(key, data, headers=META if meta is None else meta)
        finally:
            unsubscribe()
        return events[-1]

    def ingest(self, event: dict[str, Any]) -> Any:
        return Ingest(self.store, self.oss, self.invoker, self.settings).handle(json.dumps(event).encode())

    def run_senders(self, *, duplicate: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        results = []
        for _ in range(limit):
            if not self.invoker.queue:
                return results
            _, payload, _ = self.invoker.queue.pop(0)
            sender = Sender(self.store, self.cams, self.oss, self.invoker, self.settings)
            results.append(sender.handle(json.dumps(payload).encode(), deadline=1e12))
            if duplicate:  # at-least-once: the same event delivered again, after the first finished
                results.append(sender.handle(json.dumps(payload).encode(), deadline=1e12))
        raise AssertionError("senders never settled")

    def object(self, key: str) -> bytes:
        return self.bucket.get_object(key).read()

    def keys(self, prefix: str) -> list[str]:
        return sorted(o.key for o in self.bucket.list_objects_v2(prefix=prefix).object_list)
