"""``python -m alibaba_localcloud.cams`` (in ChatApp Mass Sender: ``chatapp-mass local-cams``): run the
local CAMS until SIGINT/SIGTERM.

It prints ONE JSON line on stdout once it listens::

    {"service": "cams", "endpoint": "http://127.0.0.1:PORT", "region_id": "ap-southeast-1",
     "access_key_id": "...", "access_key_secret": "...", "security_token": "..."}
"""

from __future__ import annotations

import argparse
from functools import partial

from .._http import serve_until_signalled
from .models import DEFAULT_MAX_BODY, DEFAULT_MAX_REQUEST_LINE, DEFAULT_QPS_LIMIT
from .server import LocalCams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds each reply waits after the call is recorded (default 0)",
    )
    parser.add_argument(
        "--latency-jitter",
        type=float,
        default=0.0,
        help="latency spread as a fraction: 0.5 with --latency 0.25 gives 125-375 ms",
    )
    parser.add_argument(
        "--latency-extra-jitter",
        type=float,
        default=0.0,
        help="a benchmark knob: seconds of extra spread (±) on every reply's latency, for a jittery network",
    )
    parser.add_argument(
        "--qps-limit",
        type=int,
        default=DEFAULT_QPS_LIMIT,
        help=f"calls per sliding second per AccessKey (default {DEFAULT_QPS_LIMIT}; 0: none)",
    )
    parser.add_argument(
        "--max-request-line",
        type=int,
        default=DEFAULT_MAX_REQUEST_LINE,
        help=f"longest request line in bytes; longer gets 414 (default {DEFAULT_MAX_REQUEST_LINE})",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        help=f"largest request body in bytes; larger gets 413 (default {DEFAULT_MAX_BODY})",
    )
    parser.add_argument(
        "--template",
        action="append",
        dest="templates",
        metavar="CODE_OR_NAME",
        help="a known template code or name (repeat); without it any template is accepted",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for ids, jitter and random throttling")
    parser.add_argument(
        "--receipt-url",
        help="push delivery receipts (ChatAppStatus JSON arrays) here, e.g. http://127.0.0.1:9000/receipts?key=K "
        "(default: none; more options: POST /_localcams/config)",
    )
    parser.add_argument("--inbound-url", help="push inbound messages (ChatAppInbound) here (default: none)")
    parser.add_argument(
        "--sts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="issue STS-style credentials with a security token (default: on)",
    )


def run(args: argparse.Namespace) -> int:
    return serve_until_signalled(
        partial(
            LocalCams,
            host=args.host,
            port=args.port,
            sts=args.sts,
            latency=args.latency,
            latency_jitter=args.latency_jitter,
            latency_extra_jitter=args.latency_extra_jitter,
            qps_limit=args.qps_limit or None,
            max_request_line=args.max_request_line,
            max_body=args.max_body,
            templates=args.templates,
            seed=args.seed,
            receipt_options={
                name: url
                for name, url in (("receipt_url", args.receipt_url), ("inbound_url", args.inbound_url))
                if url
            },
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alibaba_localcloud.cams",
        description="Run the local CAMS (SendChatappMassMessage) on loopback.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
