"""``chatapp-mass invoke FUNCTION EVENT.json``: run one function's handler once, locally — the counterpart of
``s local invoke``.

The function is found in s.yaml (by resource key, ``ingest``, or function name, ``chatapp-mass-ingest``). The
handler runs in a worker process exactly as the local FC runs it: s.yaml's ``environmentVariables``, then
the ``CHATAPP_*`` and region variables of *your* environment over them (``. cloud.env`` from
``chatapp-mass local-cloud`` points them at the local cloud), ``FC_*`` variables, the role's credentials
from your ``ALIBABA_CLOUD_*`` variables, and a context with request id, function meta, region and account.
Prints the handler's return value (or its error) and exits 0 (1 when the handler failed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from chatapp_mass.runtime import env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("function", help="s.yaml resource key (ingest, sender) or function name")
    parser.add_argument("event", help="the event file (see events/), or - for standard input")
    parser.add_argument("--s-yaml", default="s.yaml", help="the Serverless Devs file (default: %(default)s)")
    parser.add_argument(
        "--account-id",
        default=None,
        help="for ${config('AccountID')} and FC_ACCOUNT_ID "
        "(default: $ALIBABA_CLOUD_ACCOUNT_ID or 1234567890123456)",
    )
    parser.add_argument(
        "--built",
        action="store_true",
        help="run the built package (s.yaml's code: path) instead of functions/ + shared/",
    )


def run(args: argparse.Namespace) -> int:
    from alibaba_localcloud import syaml
    from alibaba_localcloud._accounts import Account
    from alibaba_localcloud.fc import FcBackend
    from chatapp_mass.core.errors import OptionsError

    s_yaml = Path(args.s_yaml)
    if not s_yaml.is_file():
        raise OptionsError(f"{s_yaml}: no such file (run from the project root or give --s-yaml)")
    account = args.account_id or os.environ.get("ALIBABA_CLOUD_ACCOUNT_ID") or "1234567890123456"
    specs = syaml.functions(syaml.load(s_yaml, os.environ, account_id=account), s_yaml.parent)
    spec = next((s for s in specs if args.function in (s.resource, s.name)), None)
    if spec is None:
        known = ", ".join(f"{s.resource} ({s.name})" for s in specs)
        raise OptionsError(f"{args.function!r}: no such function in {s_yaml} (functions: {known})")
    if args.event == "-":
        payload = sys.stdin.buffer.read()
    elif os.path.isfile(args.event):
        payload = Path(args.event).read_bytes()
    else:
        raise OptionsError(f"{args.event}: no such event file (samples: events/)")
    overrides = {
        k: v for k, v in os.environ.items() if k.startswith("CHATAPP_") or k == env.ALIBABA_CLOUD_REGION_ID
    }
    key_id = os.environ.get(env.ALIBABA_CLOUD_ACCESS_KEY_ID, "")
    role = (
        Account(
            key_id,
            os.environ.get(env.ALIBABA_CLOUD_ACCESS_KEY_SECRET, ""),
            os.environ.get(env.ALIBABA_CLOUD_SECURITY_TOKEN) or None,
        )
        if key_id
        else None
    )
    backend = FcBackend(
        [spec],
        project_root=s_yaml.parent,
        account_id=account,
        region_id=os.environ.get(env.ALIBABA_CLOUD_REGION_ID) or env.DEFAULT_REGION,
        role_credentials=role,
        environment_overrides=overrides,
        source_layout=not args.built,
    )
    try:
        result = backend.invoke_sync(spec.name, payload)
    finally:
        backend.close()
    outcome = result.outcome
    print(
        json.dumps(
            {
                "function": spec.name,
                "request_id": result.request_id,
                "status": outcome.status,
                "duration_s": round(outcome.duration, 3),
            }
        ),
        file=sys.stderr,
    )
    if outcome.status != "ok":
        print(json.dumps(outcome.error or {"errorMessage": outcome.status}, indent=2))
        return 1
    body: Any = outcome.body.decode("utf-8", "replace")
    print(body)
    return 0
