"""``python -m alibaba_localcloud.oss``: run the local OSS until SIGINT/SIGTERM.

It prints ONE JSON line on stdout once it listens::

    {"service": "oss", "endpoint": "http://127.0.0.1:PORT", "bucket": "chatapp-mass",
     "buckets": ["chatapp-mass"], "region_id": "ap-southeast-1", "access_key_id": "...",
     "access_key_secret": "...", "security_token": "...", "data_dir": null}

With ``--data DIR`` buckets and objects survive a restart on the same directory. Requests must be signed
with V4 (``OSS4-HMAC-SHA256``, scoped to ``--region``); ``--allow-v1-signatures`` also accepts V1.
"""

from __future__ import annotations

import argparse
from functools import partial

from .._accounts import DEFAULT_REGION
from .._http import serve_until_signalled
from .models import DEFAULT_MAX_CLOCK_SKEW
from .server import DEFAULT_BUCKETS, LocalOss


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help="keep buckets and objects here across restarts (default: a temporary directory, "
        "removed on exit)",
    )
    parser.add_argument(
        "--bucket",
        action="append",
        dest="buckets",
        metavar="NAME",
        help=f"a bucket to create (repeat; default {DEFAULT_BUCKETS[0]})",
    )
    parser.add_argument("--region", default=DEFAULT_REGION, help=f"region id (default {DEFAULT_REGION})")
    parser.add_argument(
        "--max-clock-skew",
        type=float,
        default=DEFAULT_MAX_CLOCK_SKEW,
        help="seconds a request's Date may be off (default 900; 0: unchecked)",
    )
    parser.add_argument(
        "--event-delivery",
        choices=("sync", "thread"),
        default="sync",
        help="call event subscribers before answering the PUT (sync) or from a thread",
    )
    parser.add_argument(
        "--url-encode-event-keys",
        action="store_true",
        help="URL-encode oss.object.key in the events (quote_plus, '/' kept). Whether real "
        "OSS events do is unverified: the product accepts both forms",
    )
    parser.add_argument(
        "--min-part-size",
        type=int,
        default=None,
        metavar="BYTES",
        help="smallest part but the last a multipart upload may complete with (default 102400, OSS's 100 KB)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for request ids")
    parser.add_argument(
        "--allow-v1-signatures",
        action="store_true",
        help="also accept V1 signatures, as a bucket created before 2025-09-01 does (default: "
        "V4 only; V1 gets 403 AccessDenied)",
    )
    parser.add_argument(
        "--sts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="issue STS-style credentials with a security token (default: on)",
    )


def run(args: argparse.Namespace) -> int:
    return serve_until_signalled(
        partial(
            LocalOss,
            host=args.host,
            port=args.port,
            sts=args.sts,
            region_id=args.region,
            data_dir=args.data,
            buckets=tuple(args.buckets or DEFAULT_BUCKETS),
            max_clock_skew=args.max_clock_skew or None,
            event_delivery=args.event_delivery,
            seed=args.seed,
            allow_v1_signatures=args.allow_v1_signatures,
            url_encode_event_keys=args.url_encode_event_keys,
            **({"min_part_size": args.min_part_size} if args.min_part_size is not None else {}),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alibaba_localcloud.oss",
        description="Run the local OSS (path-style, oss2-compatible) on loopback.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
