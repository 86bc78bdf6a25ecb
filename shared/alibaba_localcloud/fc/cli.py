"""``python -m alibaba_localcloud.fc --s-yaml s.yaml``: run the local FC until SIGINT/SIGTERM.

It prints ONE JSON line on stdout once it listens::

    {"service": "fc", "endpoint": "http://127.0.0.1:PORT", "region_id": "ap-southeast-1",
     "account_id": "...", "access_key_id": "...", "access_key_secret": "...", "security_token": "...",
     "s_yaml": "/abs/s.yaml", "functions": ["..."], "http": {"<function>": "http://127.0.0.1:PORT"}}

(``http``: the endpoint of each function's HTTP trigger, each on a port of its own.)
"""

from __future__ import annotations

import argparse
from functools import partial

from .._http import serve_until_signalled
from .models import DEFAULT_ACCOUNT_ID, DEFAULT_MAX_INSTANCES
from .server import LocalFc


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--s-yaml", default="s.yaml", help="the Serverless Devs file (default s.yaml)")
    parser.add_argument(
        "--project-root", help="where functions/<resource>/ and shared/ are (default: the s.yaml's directory)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID, help="account id (default %(default)s)")
    parser.add_argument("--region", default="ap-southeast-1", help="region id (default %(default)s)")
    parser.add_argument(
        "--built",
        action="store_true",
        help="run each function from its s.yaml code directory (a built package) instead of "
        "functions/<resource>/ + shared/",
    )
    parser.add_argument(
        "--max-instances",
        type=int,
        default=DEFAULT_MAX_INSTANCES,
        help="instances per function (default %(default)s)",
    )
    parser.add_argument(
        "--env",
        type=_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every function (over s.yaml's); repeatable",
    )
    parser.add_argument("--data", metavar="DIR", help="write function logs and invocations.jsonl here")
    parser.add_argument(
        "--sts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="issue STS-style credentials with a security token (default: on)",
    )


def run(args: argparse.Namespace) -> int:
    return serve_until_signalled(
        partial(
            LocalFc,
            host=args.host,
            port=args.port,
            s_yaml=args.s_yaml,
            project_root=args.project_root,
            account_id=args.account_id,
            region_id=args.region,
            sts=args.sts,
            source_layout=not args.built,
            max_instances=args.max_instances,
            environment_overrides=dict(args.env),
            data_dir=args.data,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alibaba_localcloud.fc",
        description="Run the local Function Compute (s.yaml's functions) on loopback.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
