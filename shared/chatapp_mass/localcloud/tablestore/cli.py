"""``python -m chatapp_mass.localcloud.tablestore``: run the local Tablestore until SIGINT/SIGTERM.

It prints ONE JSON line on stdout once it listens::

    {"service": "tablestore", "endpoint": "http://127.0.0.1:PORT", "instance": "chatapp-local",
     "region": "ap-southeast-1", "credentials": {"access_key_id": "...", "access_key_secret": "...",
     "security_token": "..."}, "data_dir": null}
"""

from __future__ import annotations

import argparse
from functools import partial

from .._accounts import DEFAULT_REGION
from .._http import serve_until_signalled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--instance", default="chatapp-local", help="instance name (default chatapp-local)")
    parser.add_argument("--region", default=DEFAULT_REGION, help=f"region id (default {DEFAULT_REGION})")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="keep tables and rows in DIR/tablestore.sqlite3 (default: in memory)")
    parser.add_argument("--access-key-id", default=None, help="accept this AccessKey id (default: generated)")
    parser.add_argument("--access-key-secret", default=None, help="its secret (with --access-key-id)")
    parser.add_argument("--security-token", default=None, help="require this STS token (with --access-key-id)")
    parser.add_argument("--sts", action=argparse.BooleanOptionalAction, default=True,
                        help="generate STS-style credentials with a security token (default: on)")


def run(args: argparse.Namespace) -> int:
    from .server import LocalTablestore

    return serve_until_signalled(partial(
        LocalTablestore, host=args.host, port=args.port, sts=args.sts, access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret, security_token=args.security_token, region_id=args.region,
        instance_name=args.instance, data_dir=args.data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chatapp_mass.localcloud.tablestore",
                                     description="Run the local Tablestore (OTS) on loopback.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
