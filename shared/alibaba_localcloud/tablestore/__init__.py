"""Local Tablestore (OTS): the real ``tablestore.OTSClient`` talks to it over HTTP, unchanged but for the endpoint.

Tables and rows live in SQLite (in memory, or in ``data_dir`` so a restart keeps them); requests are signed and
checked as the real service does; replies are protobuf + PlainBuffer, signed as the SDK verifies them. Realistic
by default: a new table is not ready for a couple of seconds, table operations are limited to 10/s per instance
(``realistic=False`` or ``--no-realistic`` turns both off; see ``models.TablestoreBackend``).
"""

from .exceptions import TablestoreError
from .models import RequestRecord, TableInfo, TablestoreBackend
from .server import LocalTablestore

__all__ = ["LocalTablestore", "RequestRecord", "TableInfo", "TablestoreBackend", "TablestoreError"]
