"""``python -m alibaba_localcloud.tablestore``: run the local Tablestore until SIGINT/SIGTERM.

It prints ONE JSON line on stdout once it listens::

    {"service": "tablestore", "endpoint": "http://127.0.0.1:PORT", "instance": "chatapp-local",
     "region": "ap-southeast-1", "credentials": {"access_key_id": "...", "access_key_secret": "...",
     "security_token": "..."}, "data_dir": null, "realistic": {"on": true, ...}}
"""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from .._accounts import DEFAULT_REGION
from .._http import serve_until_signalled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--instance", default="chatapp-local", help="instance name (default chatapp-local)")
    parser.add_argument("--region", default=DEFAULT_REGION, help=f"region id (default {DEFAULT_REGION})")
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="keep tables and rows in DIR/tablestore.sqlite3 (default: in memory)",
    )
    parser.add_argument("--access-key-id", default=None, help="accept this AccessKey id (default: generated)")
    parser.add_argument("--access-key-secret", default=None, help="its secret (with --access-key-id)")
    parser.add_argument(
        "--security-token", default=None, help="require this STS token (with --access-key-id)"
    )
    parser.add_argument(
        "--sts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="generate STS-style credentials with a security token (default: on)",
    )
    add_realistic_arguments(parser)


def add_realistic_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The realistic mode's switch and values (also offered by ``chatapp-mass local-cloud``)."""
    parser.add_argument(
        f"--{prefix}realistic",
        dest="realistic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the real service's timing rules: a new table answers OTSTableNotReady "
        "for a while, table operations are limited per second (default: on)",
    )
    parser.add_argument(
        f"--{prefix}table-not-ready-seconds",
        dest="table_not_ready_seconds",
        type=float,
        default=None,
        metavar="S",
        help="how long a new table is not ready (default: 2 when realistic, else 0)",
    )
    parser.add_argument(
        f"--{prefix}table-operations-per-second",
        dest="table_operations_per_second",
        type=int,
        default=None,
        metavar="N",
        help="table-metadata operations per second per instance (default: 10 when realistic, else unlimited)",
    )


def realistic_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "realistic": args.realistic,
        "table_not_ready_seconds": args.table_not_ready_seconds,
        "table_operations_per_second": args.table_operations_per_second,
    }


def run(args: argparse.Namespace) -> int:
    from .server import LocalTablestore

    return serve_until_signalled(
        partial(
            LocalTablestore,
            host=args.host,
            port=args.port,
            sts=args.sts,
            access_key_id=args.access_key_id,
            access_key_secret=args.access_key_secret,
            security_token=args.security_token,
            region_id=args.region,
            instance_name=args.instance,
            data_dir=args.data,
            **realistic_options(args),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alibaba_localcloud.tablestore",
        description="Run the local Tablestore (OTS) on loopback.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
