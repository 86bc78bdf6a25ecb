"""``LocalCloud``: CAMS, OSS and Tablestore on loopback together, sharing one set of STS-style credentials.

    with LocalCloud(data_dir="cloud-data") as cloud:
        os.environ.update(cloud.environment())   # what the product reads: endpoints, credentials, store
        ...

With ``s_yaml`` the local FC runs that file's functions too: OSS uploads fire their OSS triggers, and the
functions get :meth:`environment` (minus the credentials: theirs are the role's) plus ``CHATAPP_FC_ENDPOINT``,
so they reach the local CAMS, OSS, Tablestore and FC. Without ``s_yaml`` there is no FC (uploads fire
nothing), so OSS-only users of the local cloud are not surprised by functions reacting to their uploads.

A function with an HTTP trigger is served on a loopback port of its own: :meth:`describe` lists them under
``http`` (``{function: url}``), and :meth:`environment` (so ``--env-file`` too) sets ``CHATAPP_API_URL`` to
the FIRST one in s.yaml order — the product's API for its clients. The functions are not given it.

``chatapp-mass local-cloud`` runs one until interrupted and prints ONE JSON line (see :meth:`describe`):
each service's endpoint, the bucket, the Tablestore instance, the credentials, and ``env`` — the variables
to export so ``chatapp-mass`` (or any SDK) uses it. With ``data_dir`` the state (objects, tables, and the
credentials themselves) survives a restart; without it, everything lives in a temporary directory.

``realistic`` (default on, as in `local-cloud`): the emulators keep the real services' timing rules (the local
Tablestore: a new table is not ready at once, table operations limited per second; see its models).
``tablestore_options`` go to :class:`LocalTablestore` (e.g. ``table_not_ready_seconds``). Once started, the
product's Tablestore tables exist and are ready (``product_tables``, default on): what the deploy step
``chatapp-mass init-tables`` does in the cloud, done here by the same code, so the functions and
``chatapp-mass send --store tablestore://...`` find them.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from chatapp_mass import env
from chatapp_mass.localcloud._accounts import CamsCredentials, generate_credentials
from chatapp_mass.localcloud.cams import LocalCams

DEFAULT_BUCKET = "chatapp-mass"
DEFAULT_INSTANCE = "chatapp-local"
#: the first HTTP-triggered function's URL, for the product's clients (never given to the functions)
API_URL_VARIABLE = env.CHATAPP_API_URL


class LocalCloud:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        cams_port: int = 0,
        oss_port: int = 0,
        tablestore_port: int = 0,
        data_dir: str | None = None,
        bucket: str = DEFAULT_BUCKET,
        instance: str = DEFAULT_INSTANCE,
        sts: bool = True,
        cams_options: dict[str, Any] | None = None,
        s_yaml: str | None = None,
        fc_port: int = 0,
        function_environment: dict[str, str] | None = None,
        fc_options: dict[str, Any] | None = None,
        realistic: bool = True,
        tablestore_options: dict[str, Any] | None = None,
        product_tables: bool = True,
        oss_options: dict[str, Any] | None = None,
    ) -> None:
        from chatapp_mass.localcloud.oss import LocalOss
        from chatapp_mass.localcloud.tablestore import LocalTablestore

        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="chatapp-local-cloud-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.credentials = self._credentials(sts)
        self.bucket = bucket
        self.instance = instance
        keys: dict[str, Any] = dict(  # the same account for each service
            access_key_id=self.credentials.access_key_id,
            access_key_secret=self.credentials.access_key_secret,
            security_token=self.credentials.security_token,
            region_id=self.credentials.region_id,
        )
        self.cams = LocalCams(host=host, port=cams_port, **keys, **(cams_options or {}))
        self.oss = LocalOss(
            host=host,
            port=oss_port,
            data_dir=os.path.join(self.data_dir, "oss"),
            buckets=(bucket,),
            **keys,
            **(oss_options or {}),
        )
        self.tablestore = LocalTablestore(
            host=host,
            port=tablestore_port,
            instance_name=instance,
            data_dir=os.path.join(self.data_dir, "tablestore"),
            realistic=realistic,
            **keys,
            **(tablestore_options or {}),
        )
        self.product_tables = product_tables
        self._function_environment = dict(function_environment or {})
        self.fc = None if s_yaml is None else self._local_fc(s_yaml, host, fc_port, keys, fc_options or {})
        self._started: list[Any] = []

    def _local_fc(
        self, s_yaml: str, host: str, port: int, keys: dict[str, Any], options: dict[str, Any]
    ) -> Any:
        from chatapp_mass.localcloud.fc import LocalFc

        if not self._own_dir:  # with --data, function output goes to DIR/fc/logs/; otherwise to stderr
            options.setdefault("data_dir", os.path.join(self.data_dir, "fc"))
        return LocalFc(host, port, s_yaml=s_yaml, oss_backend=self.oss.backend, **keys, **options)

    def _credentials(self, sts: bool) -> CamsCredentials:
        """Kept in the data directory, so a restarted cloud accepts the clients configured before."""
        path = os.path.join(self.data_dir, "credentials.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return CamsCredentials(**json.load(handle))
        credentials = generate_credentials(sts=sts)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(credentials.as_dict(), handle)
        os.chmod(path, 0o600)
        return credentials

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> LocalCloud:
        try:
            for service in (self.cams, self.oss, self.tablestore, self.fc):
                if service is not None and service not in self._started:
                    service.start()
                    self._started.append(service)
            if self.product_tables:
                self.init_product_tables()
            if self.fc is not None:  # endpoints are known now: what the functions reach
                secrets = (
                    env.ALIBABA_CLOUD_ACCESS_KEY_ID,
                    env.ALIBABA_CLOUD_ACCESS_KEY_SECRET,
                    env.ALIBABA_CLOUD_SECURITY_TOKEN,
                    API_URL_VARIABLE,
                )
                self.fc.backend.update_environment(
                    {
                        **{k: v for k, v in self.environment().items() if k not in secrets},
                        **self._function_environment,
                    }
                )
        except BaseException:
            self.stop()
            raise
        return self

    def init_product_tables(self) -> dict[str, Any]:
        """The product's tables (prefix ``CHATAPP_TABLE_PREFIX`` of the functions' environment, else the default),
        created if missing and ready: ``chatapp-mass init-tables``, through the same code."""
        from chatapp_mass.store_tablestore import TablestoreSettings, TablestoreStore

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

    def stop(self) -> None:
        while self._started:
            self._started.pop().stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- where it is ------------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The variables that point the product (and the SDKs' default credential chain) here."""
        creds = self.credentials
        variables = {
            env.CHATAPP_CAMS_ENDPOINT: self.cams.endpoint,
            env.CHATAPP_OSS_ENDPOINT: self.oss.endpoint,
            env.CHATAPP_OSS_REGION: self.oss.credentials.region_id,  # a loopback endpoint names no region
            env.CHATAPP_TABLESTORE_ENDPOINT: self.tablestore.endpoint,
            env.CHATAPP_STORE: f"tablestore://{self.instance}",
            env.ALIBABA_CLOUD_REGION_ID: creds.region_id,
            env.ALIBABA_CLOUD_ACCESS_KEY_ID: creds.access_key_id,
            env.ALIBABA_CLOUD_ACCESS_KEY_SECRET: creds.access_key_secret,
            env.ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
        }
        if creds.security_token:
            variables[env.ALIBABA_CLOUD_SECURITY_TOKEN] = creds.security_token
        if self.fc is not None:
            variables[env.CHATAPP_FC_ENDPOINT] = self.fc.endpoint
            first_api = next(iter(self.fc.http_endpoints.values()), None)
            if first_api is not None:
                variables[API_URL_VARIABLE] = first_api
        return variables

    def describe(self) -> dict[str, Any]:
        return {
            "region_id": self.credentials.region_id,
            "credentials": {
                "access_key_id": self.credentials.access_key_id,
                "access_key_secret": self.credentials.access_key_secret,
                "security_token": self.credentials.security_token,
            },
            "cams": {"endpoint": self.cams.endpoint},
            "oss": {"endpoint": self.oss.endpoint, "bucket": self.bucket},
            "tablestore": {"endpoint": self.tablestore.endpoint, "instance": self.instance},
            "fc": None
            if self.fc is None
            else {"endpoint": self.fc.endpoint, "functions": self.fc.backend.function_names},
            "http": {} if self.fc is None else self.fc.http_endpoints,
            "data_dir": None if self._own_dir else os.path.abspath(self.data_dir),
            "env": self.environment(),
        }


# --- `chatapp-mass local-cloud` -------------------------------------------------------------------------
def add_arguments(parser: Any) -> None:
    import argparse

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
    from chatapp_mass.localcloud.tablestore.cli import add_realistic_arguments

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
        help="the bearer token the api function requires (default: a new random one, printed in "
        "the JSON line and written to --env-file as CHATAPP_API_TOKEN)",
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
    api_token = args.api_token or secrets.token_urlsafe(18)
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
        function_environment={env.CHATAPP_API_TOKEN: api_token},
        realistic=args.realistic,
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
