"""The local cloud as the product uses it: :class:`LocalCloud` is the emulators' cloud
(:mod:`alibaba_localcloud.cloud`) with the product's variable names (``CHATAPP_CAMS_ENDPOINT``, ...,
``CHATAPP_STORE``, ``CHATAPP_API_URL``) and the product's Tablestore tables created once it is up
(``product_tables``, default on: what the deploy step ``chatapp-mass init-tables`` does in the cloud, done here
by the same code, so the functions and ``chatapp-mass send --store tablestore://...`` find them). Fault tests
arm the product's crash points (:mod:`chatapp_mass.runtime.faults`) through the local FC.

``chatapp-mass local-cloud`` runs one until interrupted and prints ONE JSON line (see ``describe``): each
service's endpoint, the bucket, the Tablestore instance, the credentials, and ``env`` — the variables to
export so ``chatapp-mass`` (or any SDK) uses it.

Least privilege: with an ``s_yaml`` whose directory holds ``deploy/``, each function's role gets the policy
``deploy/ram-policy-<resource key>.json`` (placeholders filled from this cloud), and every service refuses
what it does not allow (:mod:`alibaba_localcloud.ram`); ``role_policies`` overrides (role name -> policy).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any, ClassVar

from alibaba_localcloud import cloud as _cloud
from alibaba_localcloud.syaml import SYamlError
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.runtime import env

DEFAULT_BUCKET = _cloud.DEFAULT_BUCKET
DEFAULT_INSTANCE = _cloud.DEFAULT_INSTANCE
#: the first HTTP-triggered function's URL, for the product's clients (never given to the functions)
API_URL_VARIABLE = env.CHATAPP_API_URL
CRASH_MODULE = "chatapp_mass.runtime.faults"


class LocalCloud(_cloud.LocalCloud):
    VARIABLES: ClassVar[dict[str, str]] = {
        "cams": env.CHATAPP_CAMS_ENDPOINT,
        "oss": env.CHATAPP_OSS_ENDPOINT,
        "oss_region": env.CHATAPP_OSS_REGION,
        "tablestore": env.CHATAPP_TABLESTORE_ENDPOINT,
        "fc": env.CHATAPP_FC_ENDPOINT,
        "http": API_URL_VARIABLE,
    }
    # the local CAMS pushes ChatAppStatus/ChatAppInbound to the api function (the first HTTP-triggered one)
    # when it has a CHATAPP_RECEIPT_KEY: the routes of entry/http_api.py (issue 17)
    RECEIPTS: ClassVar[dict[str, str]] = {
        "key_variable": env.CHATAPP_RECEIPT_KEY,
        "receipt_path": "/receipts",
        "mns_path": "/receipts/mns",
        "inbound_path": "/inbound",
    }

    def __init__(self, *, product_tables: bool = True, **options: Any) -> None:
        options["fc_options"] = {"crash_module": CRASH_MODULE, **(options.get("fc_options") or {})}
        self.product_tables = product_tables
        try:
            if options.get("s_yaml") is not None and options.get("role_policies") is None:
                options["role_policies"] = deploy_policies(options["s_yaml"])
            super().__init__(**options)
        except SYamlError as error:
            raise OptionsError(str(error)) from None

    def on_started(self) -> None:
        if self.product_tables:
            self.init_product_tables()

    def environment(self) -> dict[str, str]:
        return {**super().environment(), env.CHATAPP_STORE: f"tablestore://{self.instance}"}

    def init_product_tables(self) -> dict[str, Any]:
        """The product's tables (prefix ``CHATAPP_TABLE_PREFIX`` of the functions' environment, else the default),
        created if missing and ready: ``chatapp-mass init-tables``, through the same code."""
        from chatapp_mass.store.tablestore import TablestoreSettings, TablestoreStore

        environ = {**self.environment(), **self._function_environment}
        settings = TablestoreSettings.from_url(f"tablestore://{self.instance}", environ)
        creds = self.credentials
        store = TablestoreStore(
            settings,
            access_key_id=creds.access_key_id,
            access_key_secret=creds.access_key_secret,
            security_token=creds.security_token or "",
            create_tables=False,
        )
        try:
            return store.init_tables()
        finally:
            store.close()


def deploy_policies(s_yaml: str | os.PathLike[str]) -> dict[str, dict[str, Any]] | None:
    """Role name -> the policy document of ``deploy/ram-policy-<resource>.json`` beside ``s_yaml``, for each
    function with a role; None when there is no ``deploy/`` there (a test's own s.yaml: no RAM). A function
    whose policy file is missing, or two functions of one role with different files, is an OptionsError."""
    from pathlib import Path

    from alibaba_localcloud.fc.models import role_name
    from alibaba_localcloud.syaml import functions, load

    root = Path(s_yaml).resolve().parent
    deploy = root / "deploy"
    if not deploy.is_dir():
        return None
    policies: dict[str, dict[str, Any]] = {}
    sources: dict[str, Path] = {}
    for spec in functions(load(s_yaml, os.environ, "0"), root):
        if not spec.role:
            continue
        path = deploy / f"ram-policy-{spec.resource}.json"
        if not path.is_file():
            raise OptionsError(f"{s_yaml}: function {spec.name} has a role, but no policy file {path}")
        name = role_name(spec.role)
        if name in sources and sources[name] != path:
            raise OptionsError(
                f"{s_yaml}: role {name} of two functions with different policies ({sources[name]}, {path}); "
                "give each function its own role"
            )
        sources[name] = path
        policies[name] = json.loads(path.read_text(encoding="utf-8"))
    return policies


# --- the commands that run the emulators: `chatapp-mass local-cams`, `local-cloud`, `invoke` ----------------
def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the three commands with the CLI's ``add_parser`` (:func:`run_command` runs them)."""
    from alibaba_localcloud.cams import cli as local_cams_cli
    from chatapp_mass.entry import invoke

    local = add_parser("local-cams", help="run the loopback CAMS emulator (prints one JSON line)")
    local_cams_cli.add_arguments(local)
    local_cloud = add_parser(
        "local-cloud",
        help="run CAMS, OSS and Tablestore on loopback (prints one JSON line with endpoints, "
        "credentials and the environment to export)",
    )
    add_arguments(local_cloud)
    invoke_parser = add_parser(
        "invoke",
        help="run a function's handler once with an event file, locally (like `s local invoke`)",
        description=invoke.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    invoke.add_arguments(invoke_parser)


def run_command(args: argparse.Namespace) -> int:
    from alibaba_localcloud.cams import cli as local_cams_cli
    from chatapp_mass.entry import invoke

    if args.command == "local-cams":
        return int(local_cams_cli.run(args))
    if args.command == "invoke":
        return invoke.run(args)
    return run(args)


# --- `chatapp-mass local-cloud` -------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--cams-port", type=int, default=0, help="CAMS port (default 0: any free port)")
    parser.add_argument("--oss-port", type=int, default=0, help="OSS port (default 0: any free port)")
    parser.add_argument(
        "--tablestore-port", type=int, default=0, help="Tablestore port (default 0: any free port)"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="keep objects, tables and credentials here across restarts "
        "(default: a temporary directory, removed on exit)",
    )
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket to create (default %(default)s)")
    parser.add_argument(
        "--instance", default=DEFAULT_INSTANCE, help="Tablestore instance name (default %(default)s)"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="CAMS reply latency in seconds (default 0)"
    )
    parser.add_argument(
        "--sts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="STS-style credentials with a security token (default: on)",
    )
    from alibaba_localcloud.tablestore.cli import add_realistic_arguments

    add_realistic_arguments(parser)
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="also write the variables as shell `export` lines here (then: . FILE)",
    )
    parser.add_argument(
        "--upload",
        metavar="PATH[=KEY]",
        action="append",
        default=[],
        help="put a local file into the bucket once started (key default: the file name); repeatable",
    )
    parser.add_argument(
        "--s-yaml",
        metavar="FILE",
        default=None,
        help="run this Serverless Devs file's functions on a local FC (default: ./s.yaml if it "
        "exists); uploads then fire their OSS triggers",
    )
    parser.add_argument("--no-fc", action="store_true", help="no local FC, even if ./s.yaml exists")
    parser.add_argument("--fc-port", type=int, default=0, help="FC port (default 0: any free port)")
    parser.add_argument(
        "--url-encode-event-keys",
        action="store_true",
        help="the local OSS URL-encodes oss.object.key in its events (unverified whether real OSS "
        "does; the product accepts both)",
    )
    parser.add_argument(
        "--api-token",
        default=None,
        help="an admin token the api function takes (at least 32 characters; default: a new random one, "
        "printed in the JSON line and written to --env-file as CHATAPP_API_TOKEN); the function gets its "
        "hash in CHATAPP_API_TOKENS, beside a read-only token's (printed too)",
    )


def upload_argument(text: str) -> tuple[str, str]:
    path, _, key = text.partition("=")
    if not os.path.isfile(path):
        raise SystemExit(f"chatapp-mass local-cloud: --upload {text!r}: no such file {path!r}")
    return path, key or os.path.basename(path)


def write_env_file(path: str, variables: dict[str, str]) -> None:
    import shlex

    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# written by chatapp-mass local-cloud: . this file to use it\n")
        for name, value in variables.items():
            handle.write(f"export {name}={shlex.quote(value)}\n")
    os.chmod(path, 0o600)


def run(args: Any) -> int:
    import secrets
    import signal
    import sys
    import threading

    uploads = [upload_argument(text) for text in args.upload]
    from chatapp_mass.core.errors import OptionsError
    from chatapp_mass.core.tokens import Scope, TokenEntry, check_length, new_token, token_digest

    api_token = args.api_token or secrets.token_urlsafe(32)
    try:
        check_length(api_token, "--api-token")
    except OptionsError as error:
        raise SystemExit(f"chatapp-mass local-cloud: {error}") from None
    read_token, read_entry = new_token(Scope.read)
    # the receipt callbacks' secret: the local CAMS pushes receipts to the api function with it (LocalCloud)
    receipt_key = os.environ.get(env.CHATAPP_RECEIPT_KEY) or secrets.token_urlsafe(24)
    token_entries = f"{TokenEntry(Scope.admin, token_digest(api_token))},{read_entry}"
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    cloud = LocalCloud(
        host=args.host,
        cams_port=args.cams_port,
        oss_port=args.oss_port,
        tablestore_port=args.tablestore_port,
        data_dir=args.data,
        bucket=args.bucket,
        instance=args.instance,
        sts=args.sts,
        cams_options={"latency": args.latency, "latency_jitter": 0.5 if args.latency else 0.0},
        s_yaml=None if args.no_fc else args.s_yaml or ("s.yaml" if os.path.isfile("s.yaml") else None),
        fc_port=args.fc_port,
        function_environment={env.CHATAPP_API_TOKENS: token_entries, env.CHATAPP_RECEIPT_KEY: receipt_key},
        realistic=args.realistic,
        steady_collector=True,  # a long-running cloud that holds whole jobs (alibaba_localcloud._collector)
        tablestore_options={
            "table_not_ready_seconds": args.table_not_ready_seconds,
            "table_operations_per_second": args.table_operations_per_second,
        },
        oss_options={"url_encode_event_keys": True} if args.url_encode_event_keys else None,
    )
    try:
        cloud.start()
        if uploads:
            bucket = cloud.oss.oss2_bucket(cloud.bucket)
            for path, key in uploads:
                bucket.put_object_from_file(key, path)
        if args.env_file:
            write_env_file(args.env_file, {**cloud.environment(), env.CHATAPP_API_TOKEN: api_token})
        info = cloud.describe()
        if cloud.fc is not None and cloud.fc.http_endpoints:
            info["api_token"] = api_token
            info["read_token"] = read_token
            console = next(iter(cloud.fc.http_endpoints.values())) + "/console/"
            info["console"] = console
            sys.stderr.write(
                f"chatapp-mass local-cloud: the web console is at {console}\n"
                f"  sign in with the API token {api_token} (scope admin)"
                + (f" (also in {args.env_file} as CHATAPP_API_TOKEN)" if args.env_file else "")
                + f"\n  or, to only look, with {read_token} (scope read)"
                + "\n  stop with Ctrl-C\n"
            )
        info["uploaded"] = [f"oss://{cloud.bucket}/{key}" for _, key in uploads]
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        cloud.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
