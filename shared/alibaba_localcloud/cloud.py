"""``LocalCloud``: CAMS, OSS and Tablestore on loopback together, sharing one set of STS-style credentials.

    with LocalCloud(data_dir="cloud-data") as cloud:
        os.environ.update(cloud.environment())   # endpoints (names in LocalCloud.VARIABLES) and credentials
        ...

With ``s_yaml`` the local FC runs that file's functions too: OSS uploads fire their OSS triggers, and the
functions get :meth:`~LocalCloud.environment` (minus the credentials: theirs are the role's) plus
``function_environment``, so they reach the local CAMS, OSS, Tablestore and FC. Without ``s_yaml`` there is
no FC (uploads fire nothing), so OSS-only users are not surprised by functions reacting to their uploads.

A function with an HTTP trigger is served on a loopback port of its own: :meth:`~LocalCloud.describe` lists
them under ``http`` (``{function: url}``), and :meth:`~LocalCloud.environment` gives the FIRST one in s.yaml
order under ``VARIABLES["http"]`` (for the project's clients; the functions are not given it).

With ``data_dir`` the state (objects, tables, and the credentials themselves) survives a restart; without it,
everything lives in a temporary directory. ``realistic`` (default on): the emulators keep the real services'
timing rules (the local Tablestore: a new table is not ready at once, table operations limited per second).
RAM: ``role_policies`` (role name -> policy: a :class:`~alibaba_localcloud.ram.Policy`, a document or its JSON
text, placeholders ``${region}``, ``${accountId}``, ``${bucket}``, ``${instance}`` filled from this cloud) gives
each role of s.yaml STS credentials of its own carrying its policy; CAMS, OSS, Tablestore and FC then refuse
every request made with them that the policy does not allow, each with its real access-denied error
(:mod:`alibaba_localcloud.ram`). The account's own credentials (:attr:`credentials`, what tests and the CLI
use) stay unrestricted, as the owner's AccessKey is on the real cloud. :meth:`add_role` registers more
(a deploy step's role). Without ``role_policies`` the functions share the account's credentials.

``steady_collector`` keeps this process's garbage collector from pausing the emulators as their data grows
(``_collector``: for a long-running local cloud or a benchmark; off by default). ``tablestore_options`` go
to :class:`LocalTablestore` (e.g. ``table_not_ready_seconds``), ``cams_options``, ``oss_options`` and
``fc_options`` to theirs. A subclass prepares its own state in :meth:`~LocalCloud.on_started`
and names the variables in :attr:`~LocalCloud.VARIABLES`.

**Receipts.** A subclass that sets :attr:`~LocalCloud.RECEIPTS` has the local CAMS push its delivery receipts
and inbound messages (``cams/receipts.py``) to the first HTTP-triggered function (or ``RECEIPTS["function"]``):
``receipt_url``, ``mns_url`` and ``inbound_url`` default to that trigger's URL plus ``RECEIPTS``' paths, with
``?key=`` the value of the function's variable ``RECEIPTS["key_variable"]`` (its s.yaml environment or
``function_environment``). Without that variable, or without a function, pushing stays off (ASSUMPTION: the
callback URL carries a secret, as CAMS signs nothing; issue 17). URLs given in ``cams_options`` win.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode

from alibaba_localcloud import _collector, ram
from alibaba_localcloud._accounts import Account, CamsCredentials, generate_credentials
from alibaba_localcloud.cams import LocalCams
from alibaba_localcloud.ram import Policy

DEFAULT_BUCKET = "chatapp-mass"
DEFAULT_INSTANCE = "chatapp-local"
# the variables the Alibaba Cloud SDKs' default credential chain reads
REGION_ID = "ALIBABA_CLOUD_REGION_ID"
ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ECS_METADATA_DISABLED = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"  # no probe of the metadata address


class LocalCloud:
    #: the variable :meth:`environment` gives each endpoint under: ``oss_region`` is the bucket's region (V4
    #: signing), ``http`` the first HTTP-triggered function's URL. A project renames them in a subclass.
    VARIABLES: ClassVar[Mapping[str, str]] = {
        "cams": "LOCALCLOUD_CAMS_ENDPOINT",
        "oss": "LOCALCLOUD_OSS_ENDPOINT",
        "oss_region": "LOCALCLOUD_OSS_REGION",
        "tablestore": "LOCALCLOUD_TABLESTORE_ENDPOINT",
        "fc": "LOCALCLOUD_FC_ENDPOINT",
        "http": "LOCALCLOUD_HTTP_URL",
    }
    #: where the local CAMS pushes receipts (see the module docstring): ``key_variable`` and the paths
    #: ``receipt_path``, ``mns_path``, ``inbound_path``; optional ``function``. None: no pushing.
    RECEIPTS: ClassVar[Mapping[str, str] | None] = None

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
        oss_options: dict[str, Any] | None = None,
        steady_collector: bool = False,
        role_policies: Mapping[str, Policy | Mapping[str, Any] | str] | None = None,
    ) -> None:
        from alibaba_localcloud.oss import LocalOss
        from alibaba_localcloud.tablestore import LocalTablestore

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
        self.account_id = self.oss.backend.account_id  # one account: every service names it in its ARNs
        for backend in (self.cams.backend, self.tablestore.backend):
            backend.account_id = self.account_id
        self._function_environment = dict(function_environment or {})
        policies = None
        if role_policies is not None:
            policies = {
                name: ram.as_policy(doc, self.policy_values(), name=f"role {name}")
                for name, doc in role_policies.items()
            }
        self.fc = (
            None
            if s_yaml is None
            else self._local_fc(
                s_yaml, host, fc_port, keys, {"role_policies": policies, **(fc_options or {})}
            )
        )
        if self.fc is not None:
            for account in self.fc.role_accounts.values():
                self._register(account)
        self._started: list[Any] = []
        self._steady_collector = steady_collector  # see _collector: for a long-running cloud or a benchmark
        self._steadied = False

    def _local_fc(
        self, s_yaml: str, host: str, port: int, keys: dict[str, Any], options: dict[str, Any]
    ) -> Any:
        from alibaba_localcloud.fc import LocalFc

        if not self._own_dir:  # with --data, function output goes to DIR/fc/logs/; otherwise to stderr
            options.setdefault("data_dir", os.path.join(self.data_dir, "fc"))
        return LocalFc(
            host,
            port,
            s_yaml=s_yaml,
            oss_backend=self.oss.backend,
            account_id=self.account_id,
            **keys,
            **options,
        )

    # --- RAM --------------------------------------------------------------------------------------------
    def policy_values(self) -> dict[str, str]:
        """What a policy's placeholders stand for here."""
        return {
            "region": self.credentials.region_id,
            "accountId": self.account_id,
            "bucket": self.bucket,
            "instance": self.instance.lower(),  # Tablestore resources name instances in lower case
        }

    def _register(self, account: Account) -> None:
        for backend in (self.cams.backend, self.oss.backend, self.tablestore.backend):
            backend.add(account)
        if self.fc is not None:
            self.fc.backend.add(account)

    def add_role(self, name: str, policy: Policy | Mapping[str, Any] | str) -> CamsCredentials:
        """STS credentials of a new role ``name`` allowed only what ``policy`` allows (placeholders filled),
        accepted by every service here: what a deploy step's role, or a test, signs with."""
        keys = generate_credentials(sts=True, region_id=self.credentials.region_id)
        self._register(
            Account(
                keys.access_key_id,
                keys.access_key_secret,
                keys.security_token,
                ram.as_policy(policy, self.policy_values(), name=f"role {name}"),
                name.lower(),
                self.credentials.access_key_id,
            )
        )
        return keys

    def set_role_policy(self, name: str, policy: Policy | Mapping[str, Any] | str) -> Policy:
        """Attach another policy to a function role now (its credentials unchanged, in every service): a
        test proving one statement necessary removes it, runs, and puts the original back. Returns the old."""
        if self.fc is None or name.lower() not in self.fc.role_accounts:
            raise KeyError(f"no role {name!r} with a policy here (role_policies)")
        old: Account = self.fc.role_accounts[name.lower()]
        assert old.policy is not None
        new = dataclasses.replace(
            old, policy=ram.as_policy(policy, self.policy_values(), name=f"role {name}")
        )
        self.fc.role_accounts[name.lower()] = new
        self.fc.backend.role_accounts[name.lower()] = new
        self._register(new)
        return old.policy

    def role_credentials(self, name: str) -> CamsCredentials:
        """The STS credentials the local FC gives the functions of role ``name`` (with ``role_policies``)."""
        account = None if self.fc is None else self.fc.role_accounts.get(name.lower())
        if account is None:
            raise KeyError(f"no role {name!r} with a policy here (role_policies)")
        return CamsCredentials(
            account.access_key_id,
            account.access_key_secret,
            account.security_token,
            self.credentials.region_id,
        )

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
        if self._steady_collector and not self._steadied:
            _collector.steady()
            self._steadied = True
        try:
            for service in (self.cams, self.oss, self.tablestore, self.fc):
                if service is not None and service not in self._started:
                    service.start()
                    self._started.append(service)
            self.on_started()
            if self.fc is not None:  # endpoints are known now: what the functions reach
                secrets = (ACCESS_KEY_ID, ACCESS_KEY_SECRET, SECURITY_TOKEN, self.VARIABLES["http"])
                self.fc.backend.update_environment(
                    {
                        **{k: v for k, v in self.environment().items() if k not in secrets},
                        **self._function_environment,
                    }
                )
                self.point_receipts()
        except BaseException:
            self.stop()
            raise
        return self

    def on_started(self) -> None:
        """Called once every service is up, before the functions are given :meth:`environment`: a subclass
        prepares its own state here (tables, objects)."""

    def point_receipts(self) -> dict[str, str]:
        """Point the local CAMS's receipt and inbound pushes at the HTTP-triggered function (module docstring);
        the options it set (none when pushing stays off)."""
        spec = self.RECEIPTS
        if not spec or self.fc is None or not self.fc.http_endpoints:
            return {}
        function = spec.get("function") or next(iter(self.fc.http_endpoints))
        url = self.fc.http_endpoint(function)
        environment = {**self.fc.backend.spec(function).environment, **self.fc.backend.environment_overrides}
        key = environment.get(spec["key_variable"], "")
        if not key:
            return {}
        query = urlencode({"key": key})
        receipts = self.cams.backend.receipts.options
        wanted = {
            "receipt_url": (receipts.receipt_url, spec.get("receipt_path")),
            "mns_url": (receipts.mns_url, spec.get("mns_path")),
            "inbound_url": (receipts.inbound_url, spec.get("inbound_path")),
        }
        options = {
            name: f"{url}{path}?{query}" for name, (given, path) in wanted.items() if path and not given
        }
        self.cams.backend.configure(**options)
        return options

    def stop(self) -> None:
        self.cams.backend.close()  # the receipt pusher first: nothing pushes into functions being stopped
        while self._started:
            self._started.pop().stop()
        if self._steadied:
            self._steadied = False
            _collector.release()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- where it is ------------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The variables that point a client here: each endpoint under its name in :attr:`VARIABLES`, and
        the account under the names the SDKs' default credential chain reads."""
        creds = self.credentials
        names = self.VARIABLES
        variables = {
            names["cams"]: self.cams.endpoint,
            names["oss"]: self.oss.endpoint,
            names["oss_region"]: self.oss.credentials.region_id,  # a loopback endpoint names no region
            names["tablestore"]: self.tablestore.endpoint,
            REGION_ID: creds.region_id,
            ACCESS_KEY_ID: creds.access_key_id,
            ACCESS_KEY_SECRET: creds.access_key_secret,
            ECS_METADATA_DISABLED: "true",
        }
        if creds.security_token:
            variables[SECURITY_TOKEN] = creds.security_token
        if self.fc is not None:
            variables[names["fc"]] = self.fc.endpoint
            first_http = next(iter(self.fc.http_endpoints.values()), None)
            if first_http is not None:
                variables[names["http"]] = first_http
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
