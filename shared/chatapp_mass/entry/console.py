"""The web console: the product in a browser, served by the api function beside the JSON API (issue 15).

Longer than 500 lines: the console's routes with their pages; each page is a few lines of HTML over the JSON
API's own services (``JobsApi``), kept beside the route that serves it since they change together.

Pages (HTML without script or external assets; one stylesheet, ``/console/console.css``):

- ``GET /console/login``, ``POST /console/login`` — sign in once with the API token (a form field, never a
  URL); the answer sets the session cookie and sends the browser to the jobs list.
- ``GET /console/`` — the jobs list, newest first.
- ``GET /console/new``, ``POST /console/new`` — a new job: upload a CSV or XLSX (stored in the bucket under
  ``console-uploads/``, outside the ingest trigger's prefix) or name an OSS object; channel, template, language,
  From. The answer is the **preview** (counts, invalid rows grouped by reason with example lines, the
  TemplateParams keys, one recipient's request) with a Confirm button; nothing is sent before it.
- ``POST /console/confirm`` — creates the job from the previewed object (the ingest function plans it, as for
  ``POST /jobs`` with a ``source``); the form's nonce names the job, so a double click creates one job.
- ``GET /console/jobs/{id}`` — channel, template, source, times, status and reason, the progress and the
  status funnel, refreshed every 2 s while the job runs; pause / resume / cancel, reconcile and resend for
  uncertain recipients (``POST /console/jobs/{id}/{action}``, answered 303 back to the page with a notice).
- ``GET /console/jobs/{id}/report`` — the per-recipient report CSV.
- ``POST /console/logout``.

Security (decisions):

- **Session**: a cookie ``chatapp_session = v1.<expiry>.<random>.<HMAC-SHA256>``, keyed by a hash of the API
  token, so it holds no secret, needs no store (any FC instance checks it) and every session ends when the token
  is rotated. ``HttpOnly; SameSite=Strict; Path=/console``; ``Secure`` when the request came over HTTPS. It is
  valid for 12 hours and only for the console: the JSON API under ``/jobs`` takes the bearer header alone, and
  no route takes the token from a URL.
- **Forgery**: every POST must come from this origin (``Origin``, else ``Referer``, matches ``Host``) and carry
  the form token derived from the session; the cookie is ``SameSite=Strict`` besides.
- **Headers**: ``Content-Security-Policy: default-src 'none'; style-src 'self'; form-action 'self';
  frame-ancestors 'none'; base-uri 'none'``, ``Referrer-Policy: same-origin`` (a cross-origin request learns
  no job id; same-origin POSTs keep their ``Origin``), ``X-Content-Type-Options: nosniff``,
  ``Cache-Control: no-store``. Every value shown is escaped.
- With ``CHATAPP_API_AUTH=fc`` (FC signs requests; a browser cannot) the console is off: 404 saying so.

In the cloud, browsers download (not show) pages from the default ``*.fcapp.run`` domain, which FC answers with
``Content-Disposition: attachment`` (CreateCustomDomain: "resolve the forced download behavior when you access an
HTTP trigger"); serve the console from a custom domain. The local cloud's loopback URL stands for one.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import io
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from chatapp_mass.adapters.oss import OssLocation, SourceError
from chatapp_mass.core.errors import OptionsError
from chatapp_mass.core.options import ChannelType
from chatapp_mass.core.tokens import Scope, TokenEntry, match
from chatapp_mass.services.jobs import resolve_options
from chatapp_mass.store.interface import JobRecord, JobStatus

if TYPE_CHECKING:
    from chatapp_mass.entry.http_api import HttpEvent, JobsApi
    from chatapp_mass.services.preview import Preview

log = logging.getLogger(__name__)

PREFIX = "/console"
COOKIE = "chatapp_session"
SESSION_SECONDS = 12 * 3600
UPLOAD_PREFIX = "console-uploads/"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_JOB = re.compile(
    r"^/console/jobs/([A-Za-z0-9_-]{1,64})(?:/(report|cancel|pause|resume|reconcile|resend))?/?$"
)
_RUNNING = ("planning", "ready", "running", "scheduled", "paused")
_FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.stopped, JobStatus.cancelled)
#: what an action's notice says (fixed texts: nothing from the request is reflected)
_NOTICES = {
    "cancel": "Cancelled: batches not yet sent will not be sent.",
    "pause": "Paused: senders stop between batches.",
    "resume": "Resumed.",
    "reconcile": "Looked the uncertain recipients up in CAMS.",
    "resend": "The uncertain recipients CAMS does not have are being sent again.",
}
#: the form's option fields: (name as the API spells it, label, hint)
_OPTION_FIELDS = (
    ("TemplateCode", "Template code", "the approved template's code (or give its name)"),
    ("TemplateName", "Template name", "optional when the code is given"),
    ("Language", "Language", "the template's language code, e.g. en or zh_CN"),
    ("From", "From", "the sender: your WhatsApp business number, Viber service id, page id ..."),
)
_INTAKE_FIELDS = (
    ("recipient_column", "Recipient column", "only when it is none of to, phone, phone number, mobile ..."),
    ("default_country", "Default country", "ISO code for numbers written without +country, e.g. SG"),
    ("sheet", "Sheet", "for an Excel workbook: the sheet's name (default: the first sheet)"),
)


# --- the session -------------------------------------------------------------------------------------------
class Sessions:
    """Signs and checks session cookies and form tokens (no store). A session names the token entry it was
    opened with (the start of its hash, never the token); its key is derived from that entry (and
    ``CHATAPP_CONSOLE_SECRET`` if set), so a session ends when its token is removed from the settings, and
    carries its token's scope: the scope is the entry's now, not one written in the cookie."""

    def __init__(
        self, entries: tuple[TokenEntry, ...], secret: str = "", clock: Callable[[], float] = time.time
    ) -> None:
        self._entries = {entry.id: entry for entry in reversed(entries)}  # the first of equal ones, as match
        self._secret = secret.encode("utf-8")
        self.clock = clock

    def _mac(self, entry: TokenEntry, text: str) -> str:
        key = hashlib.sha256(
            b"chatapp-mass console session v2\0" + self._secret + b"\0" + entry.digest.encode("ascii")
        ).digest()
        return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()

    def issue(self, entry: TokenEntry) -> str:
        body = f"v2.{int(self.clock()) + SESSION_SECONDS}.{entry.id}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(entry, body)}"

    def check(self, value: str) -> TokenEntry | None:
        """The token entry of a valid, unexpired session; None otherwise."""
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != "v2" or not parts[1].isdigit():
            return None
        entry = self._entries.get(parts[2])
        if entry is None or not hmac.compare_digest(parts[4], self._mac(entry, ".".join(parts[:4]))):
            return None
        return entry if int(parts[1]) > self.clock() else None

    def valid(self, value: str) -> bool:
        return self.check(value) is not None

    def form_token(self, session: str) -> str:
        entry = self.check(session)
        return self._mac(entry, "form\0" + session)[:32] if entry is not None else ""


def _cookies(header: str) -> dict[str, str]:
    jar: dict[str, str] = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name and name not in jar:
            jar[name] = value
    return jar


# --- a request's form ---------------------------------------------------------------------------------------
@dataclass
class Upload:
    field: str
    filename: str
    data: bytes


@dataclass
class Form:
    fields: dict[str, str]
    files: dict[str, Upload]

    def get(self, name: str) -> str:
        return self.fields.get(name, "").strip()


def parse_form(event: HttpEvent) -> Form:
    """An urlencoded or multipart form body (python-multipart parses the latter)."""
    body = event.body_bytes()
    content_type = event.header("content-type")
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded" or (not media and not body):
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return Form(dict(pairs), {})
    if media != "multipart/form-data":
        raise _Refusal(415, f"Content-Type {media or '(none)'}: this form posts multipart/form-data")
    import python_multipart

    form = Form({}, {})

    def on_field(field: Any) -> None:
        form.fields[field.field_name.decode("utf-8", "replace")] = (field.value or b"").decode(
            "utf-8", "replace"
        )

    def on_file(file: Any) -> None:
        handle = file.file_object
        handle.seek(0)
        name = file.field_name.decode("utf-8", "replace")
        form.files[name] = Upload(
            name,
            (file.file_name or b"").decode("utf-8", "replace"),
            handle.read(),
        )

    try:
        python_multipart.parse_form(
            {"Content-Type": content_type.encode("latin-1"), "Content-Length": str(len(body)).encode()},
            io.BytesIO(body),
            on_field,
            on_file,
        )
    except Exception as error:  # noqa: BLE001 - python-multipart raises several kinds on a malformed body
        raise _Refusal(400, f"the form could not be read ({error})") from None
    return form


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# --- rendering -----------------------------------------------------------------------------------------------
e = html.escape


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


STYLESHEET = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1f24;background:#fafafa}
header{background:#0b5;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center}
header a,header button{color:#fff;font-weight:600;text-decoration:none;background:none;border:0;font:inherit;
 cursor:pointer;padding:0}
header .brand{font-size:1.1rem;margin-right:auto}
main{max-width:60rem;margin:1.5rem auto;padding:0 1.5rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;background:#fff;padding:1rem}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
label{display:block;font-weight:600;margin-top:.8rem}
.hint{display:block;font-weight:400;color:#555;font-size:.9rem}
input[type=text],input[type=password],select{width:100%;max-width:30rem;padding:.4rem;font:inherit;
 box-sizing:border-box}
button.primary,button.action{margin-top:1rem;padding:.5rem 1.2rem;font:inherit;font-weight:600;
 border-radius:4px;border:1px solid #075;background:#0b5;color:#fff;cursor:pointer}
button.action{background:#fff;color:#075;margin:.2rem .4rem .2rem 0}
button.danger{border-color:#a22;color:#a22}
button:focus,a:focus,input:focus,select:focus{outline:3px solid #f90;outline-offset:2px}
.notice{background:#e8f6ee;border-left:4px solid #0b5;padding:.6rem 1rem}
.error{background:#fdecec;border-left:4px solid #c33;padding:.6rem 1rem}
progress{width:100%;height:1.4rem}
pre{background:#fff;border:1px solid #ddd;padding:.8rem;overflow-x:auto;font-size:.85rem}
form.inline{display:inline}
.status{font-weight:700}
"""


def _page(title: str, body: str, *, form_token: str = "", refresh: float = 0, can_send: bool = True) -> str:
    new_job = f'<a href="{PREFIX}/new">New job</a>' if can_send else ""
    nav = (
        f'<a href="{PREFIX}/">Jobs</a>{new_job}'
        f'<form class="inline" method="post" action="{PREFIX}/logout">'
        f'<input type="hidden" name="form_token" value="{e(form_token)}">'
        '<button type="submit">Sign out</button></form>'
        if form_token
        else ""
    )
    meta = f'<meta http-equiv="refresh" content="{refresh:g}">' if refresh else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{meta}<title>{e(title)} · ChatApp Mass Sender</title>"
        f'<link rel="stylesheet" href="{PREFIX}/console.css"></head>\n'
        f'<body><header><span class="brand">ChatApp Mass Sender</span>{nav}</header>\n'
        f"<main>{body}</main></body></html>"
    )


def _hidden(form_token: str) -> str:
    return f'<input type="hidden" name="form_token" value="{e(form_token)}">'


# --- the console -------------------------------------------------------------------------------------------


class Console:
    """One browser request in, one FC3 HTTP response dict out. Uses the JSON API's services (``api``)."""

    def __init__(self, api: JobsApi, *, clock: Callable[[], float] | None = None) -> None:
        self.api = api
        self.clock = clock or api.clock
        entries = api.api.entries
        self.sessions = Sessions(entries, api.api.console_secret, self.clock) if entries else None
        self.scope = Scope.read  # the signed-in session's (handle)

    # --- replies ------------------------------------------------------------------------------------------
    @staticmethod
    def _html(status: int, text: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "statusCode": status,
            "headers": {"Content-Type": "text/html; charset=utf-8", **SECURITY_HEADERS, **(headers or {})},
            "body": text,
            "isBase64Encoded": False,
        }

    @staticmethod
    def _redirect(to: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "statusCode": 303,
            "headers": {"Location": to, **SECURITY_HEADERS, **(headers or {})},
            "body": "",
            "isBase64Encoded": False,
        }

    def _cookie(self, event: HttpEvent, value: str, max_age: int) -> str:
        secure = "; Secure" if _is_https(event) else ""
        return f"{COOKIE}={value}; Path={PREFIX}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"

    # --- entry ---------------------------------------------------------------------------------------------
    def handle(self, event: HttpEvent) -> dict[str, Any]:
        path, method = event.path, event.method
        if path in ("/", PREFIX):
            return self._redirect(f"{PREFIX}/")
        if path == f"{PREFIX}/console.css":
            reply = self._html(200, STYLESHEET)
            reply["headers"]["Content-Type"] = "text/css; charset=utf-8"
            reply["headers"]["Cache-Control"] = "public, max-age=3600"
            return reply
        if self.sessions is None:
            return self._html(
                404,
                _page(
                    "Console off",
                    "<h1>The console is off</h1><p>It needs <code>CHATAPP_API_TOKENS</code> on the api function "
                    "(with <code>CHATAPP_API_AUTH=fc</code> FC signs every request, which a browser cannot "
                    "do).</p>",
                ),
            )
        session = _cookies(event.header("cookie")).get(COOKIE, "")
        entry = self.sessions.check(session)
        signed_in = entry is not None
        self.scope = entry.scope if entry is not None else Scope.read
        try:
            if method == "POST" and not _same_origin(event):
                raise _Refusal(
                    403, "this form was not sent from this console's own pages (Origin); reload and retry"
                )
            if path == f"{PREFIX}/login":
                return self.login(event) if method == "POST" else self.login_page(event)
            if not signed_in:
                if method == "GET":
                    return self._redirect(f"{PREFIX}/login")
                raise _Refusal(401, "your session has ended: sign in again")
            form_token = self.sessions.form_token(session)
            return self._route(event, form_token)
        except _Refusal as refusal:
            token = self.sessions.form_token(session) if signed_in else ""
            body = f'<h1>Not done</h1><p class="error" role="alert">{e(refusal.message)}</p>'
            body += f'<p><a href="{PREFIX}/">Back to the jobs</a></p>' if signed_in else ""
            return self._html(
                refusal.status,
                _page("Not done", body, form_token=token, can_send=self.can_send),
                refusal.headers,
            )

    @property
    def can_send(self) -> bool:
        return self.scope.allows(Scope.send)

    def _need_send(self) -> None:
        """A read token's session sees jobs and reports; creating or changing a job needs scope send."""
        if not self.can_send:
            raise _Refusal(
                403,
                "this session's token may only read (scope read): sign in with a send or admin token to "
                "create or change jobs",
            )

    def _route(self, event: HttpEvent, form_token: str) -> dict[str, Any]:
        path, method = event.path.rstrip("/") or "/", event.method
        if path == PREFIX:
            return self._expect(method, "GET") or self.jobs_page(form_token)
        if path in (f"{PREFIX}/new", f"{PREFIX}/confirm"):
            self._need_send()
        if path == f"{PREFIX}/new":
            if method == "POST":
                return self.preview(event, form_token)
            return self._expect(method, "GET") or self.new_page(form_token)
        if path == f"{PREFIX}/confirm":
            return self._expect(method, "POST") or self.confirm(event, form_token)
        if path == f"{PREFIX}/logout":
            self._expect(method, "POST")
            self._check_form(parse_form(event), form_token)
            return self._redirect(f"{PREFIX}/login", {"Set-Cookie": self._cookie(event, "", 0)})
        match = _JOB.match(event.path)
        if match is None:
            raise _Refusal(404, f"there is no console page {event.path}")
        job = self.api.store.get_job(match.group(1))
        if job is None:
            raise _Refusal(404, f"there is no job {match.group(1)}")
        action = match.group(2) or ""
        if action == "":
            return self._expect(method, "GET") or self.job_page(job, event, form_token)
        if action == "report":
            self._expect(method, "GET")
            reply = self.api.report(job)
            reply["headers"].update(SECURITY_HEADERS)
            return reply
        self._expect(method, "POST")
        self._need_send()
        self._check_form(parse_form(event), form_token)
        return self.act(job, action, event)

    @staticmethod
    def _expect(method: str, expected: str) -> None:
        if method != expected:
            raise _Refusal(405, f"this page takes {expected}, not {method}", {"Allow": expected})

    @staticmethod
    def _check_form(form: Form, form_token: str) -> None:
        if not hmac.compare_digest(form.get("form_token"), form_token):
            raise _Refusal(403, "this form is from another session: reload the page and retry")

    # --- sign in ----------------------------------------------------------------------------------------
    def login_page(self, event: HttpEvent, *, error: str = "", status: int = 200) -> dict[str, Any]:
        assert self.sessions is not None
        if not error and self.sessions.valid(_cookies(event.header("cookie")).get(COOKIE, "")):
            return self._redirect(f"{PREFIX}/")
        alert = f'<p class="error" role="alert" id="login-error">{e(error)}</p>' if error else ""
        body = (
            "<h1>Sign in</h1>"
            f"{alert}<p>Give an API token once (one of <code>CHATAPP_API_TOKENS</code> of the api function: "
            "<code>chatapp-mass token new</code> makes one, <code>chatapp-mass local-cloud</code> prints one; "
            "a read token shows the jobs and reports only). The browser keeps a session for 12 hours; the "
            "token itself is not stored and never appears in a URL.</p>"
            f'<form method="post" action="{PREFIX}/login">'
            '<label for="token">API token</label>'
            '<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>'
            '<button class="primary" type="submit">Sign in</button></form>'
        )
        return self._html(status, _page("Sign in", body))

    def login(self, event: HttpEvent) -> dict[str, Any]:
        assert self.sessions is not None
        given = parse_form(event).get("token")
        entry = match(self.api.api.entries, given) if given else None
        if entry is None:
            log.warning("console sign-in refused", extra={"source_ip": event.request_context.http.source_ip})
            return self.login_page(event, error="That token is not valid.", status=403)
        log.info("console sign-in", extra={"scope": entry.scope.value, "token_id": entry.id})
        cookie = self._cookie(event, self.sessions.issue(entry), SESSION_SECONDS)
        return self._redirect(f"{PREFIX}/", {"Set-Cookie": cookie})

    # --- jobs ----------------------------------------------------------------------------------------------
    def jobs_page(self, form_token: str) -> dict[str, Any]:
        jobs = self.api.store.list_jobs(100)
        rows = "".join(
            "<tr>"
            f'<td><a href="{PREFIX}/jobs/{quote(job.job_id)}">{e(job.job_id[:12])}</a></td>'
            f'<td class="status">{e(job.status.value)}</td>'
            f"<td>{e(str(job.options.get('ChannelType', '')))}</td>"
            f"<td>{e(_template(job))}</td>"
            f"<td>{e(job.source)}</td>"
            f'<td class="n">{job.valid:,}</td>'
            f"<td>{e(_utc(job.created_at))}</td>"
            f"<td>{e(_utc(job.scheduled_at))}</td>"
            "</tr>"
            for job in jobs
        )
        table = (
            '<table id="jobs"><caption class="hint">Newest first (the last 100)</caption><thead><tr>'
            '<th scope="col">Job</th><th scope="col">Status</th><th scope="col">Channel</th>'
            '<th scope="col">Template</th><th scope="col">Source</th><th scope="col">Recipients</th>'
            '<th scope="col">Created</th><th scope="col">Scheduled</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
            if jobs
            else '<p id="no-jobs">No jobs yet.'
            + (f' <a href="{PREFIX}/new">Start one</a>.' if self.can_send else "")
            + "</p>"
        )
        new_job = f'<p><a href="{PREFIX}/new">New job</a></p>' if self.can_send else ""
        body = f"<h1>Jobs</h1>{new_job}{table}"
        return self._html(200, _page("Jobs", body, form_token=form_token, can_send=self.can_send))

    def job_page(self, job: JobRecord, event: HttpEvent, form_token: str) -> dict[str, Any]:
        summary = self.api.progress(job)
        # a cancelled (or stopped) job's calls in flight still finish and are recorded: refresh until they are
        running = job.status.value in _RUNNING or bool(summary["pending"])
        share = float(summary.get("share_done") or 0.0)
        notice = _NOTICES.get(event.query_value("done"), "")
        problem = event.query_value("error")
        alerts = (f'<p class="notice" role="status" id="notice">{e(notice)}</p>' if notice else "") + (
            f'<p class="error" role="alert" id="action-error">{e(problem)}</p>' if problem else ""
        )
        options = job.options
        facts = [
            ("Status", f'<span class="status" id="status">{e(job.status.value)}</span> {e(job.reason)}'),
            ("Channel", e(str(options.get("ChannelType", "")))),
            ("Template", e(_template(job))),
            ("Language", e(str(options.get("Language", "")))),
            ("From", e(str(options.get("From", "")))),
            ("Source", e(job.source)),
            ("Created", e(_utc(job.created_at))),
            ("Updated", e(_utc(job.updated_at))),
        ]
        if job.scheduled_at:
            facts.append(("Scheduled", e(_utc(job.scheduled_at))))
        rate, eta = summary.get("rate_per_second"), summary.get("eta_seconds")
        pace = "".join(
            part
            for part in (
                f" · {rate:,.0f} recipients/s" if rate else "",
                f" · about {_duration(float(eta))} left" if eta else "",
            )
        )
        funnel_rows = (
            ("valid", "Valid recipients", job.valid),
            ("sent", "Sent (CAMS accepted)", summary["sent"]),
            ("failed", "Failed", summary["failed"]),
            ("uncertain", "Uncertain (may have reached CAMS)", summary["uncertain"]),
            ("pending", "Pending", summary["pending"]),
            ("cancelled", "Cancelled", summary["cancelled"]),
            ("invalid", "Invalid rows (not sent)", summary["invalid"]),
            ("duplicate", "Duplicates (sent once)", summary["duplicate"]),
            ("suppressed", "Suppressed (on the suppression list: not sent)", summary["suppressed"]),
        )
        funnel = "".join(
            f'<tr><th scope="row">{e(label)}</th><td class="n" id="{name}">{int(value or 0):,}</td></tr>'
            for name, label, value in funnel_rows
        )
        delivery, awaiting = _delivery_funnel(summary.get("delivery"))
        body = (
            f"<h1>Job {e(job.job_id[:12])}</h1>{alerts}"
            f"<dl>{''.join(f'<dt>{name}</dt><dd>{value}</dd>' for name, value in facts)}</dl>"
            f'<h2>Progress</h2><label for="progress">Done</label>'
            f'<progress id="progress" max="100" value="{share * 100:.0f}">{share:.0%}</progress>'
            f'<p><span id="share">{share:.0%}</span> of {job.valid:,} recipients done{e(pace)}</p>'
            f'<table id="funnel">{funnel}</table>{delivery}'
            f'<h2>Actions</h2><div id="actions">{self._actions(job, summary, form_token)}</div>'
            f'<p><a id="report" href="{PREFIX}/jobs/{quote(job.job_id)}/report" download>'
            "Download the report (CSV)</a></p>"
        )
        return self._html(
            200,
            _page(
                f"Job {job.job_id[:12]}: {job.status.value}",
                body,
                form_token=form_token,
                # every 2 s while it sends; every 10 s for an hour after, while receipts are still awaited (most
                # come within minutes; a page left open is not reloaded all day for a receipt that never comes)
                refresh=2 if running else (10 if awaiting and self.clock() - job.updated_at < 3600 else 0),
                can_send=self.can_send,
            ),
        )

    def _actions(self, job: JobRecord, summary: dict[str, Any], form_token: str) -> str:
        if not self.can_send:
            return '<p id="read-only">None with this token: it may read (scope read), not act.</p>'
        status = job.status
        buttons: list[tuple[str, str, str]] = []
        if status in (JobStatus.running, JobStatus.ready, JobStatus.scheduled):
            buttons.append(("pause", "Pause", ""))
        if status is JobStatus.paused:
            buttons.append(("resume", "Resume", ""))
        if status not in _FINISHED:
            buttons.append(("cancel", "Cancel the job", " danger"))
        if summary.get("uncertain"):
            buttons.append(("reconcile", "Look uncertain recipients up in CAMS", ""))
            buttons.append(("resend", "Send again what CAMS does not have", " danger"))
        if not buttons and summary.get("pending"):
            return (
                f"<p id='in-flight'>None now: the calls of {int(summary['pending']):,} recipients are in flight; "
                "this page refreshes until they are recorded.</p>"
            )
        if not buttons:
            return "<p>None: the job has finished.</p>"
        return "".join(
            f'<form class="inline" method="post" action="{PREFIX}/jobs/{quote(job.job_id)}/{action}">'
            f'{_hidden(form_token)}<button class="action{kind}" type="submit" id="{action}">{e(label)}'
            "</button></form>"
            for action, label, kind in buttons
        )

    def act(self, job: JobRecord, action: str, event: HttpEvent) -> dict[str, Any]:
        from chatapp_mass.entry.http_api import ApiError, HttpEvent

        operations: dict[str, Callable[[], Any]] = {
            "cancel": lambda: self.api.cancel(job),
            "pause": lambda: self.api.pause(job),
            "resume": lambda: self.api.resume(job),
            "reconcile": lambda: self.api.reconcile(job, HttpEvent()),
            "resend": lambda: self.api.resend_uncertain(job, HttpEvent()),
        }
        page = f"{PREFIX}/jobs/{quote(job.job_id)}"
        try:
            operations[action]()
        except ApiError as error:
            return self._redirect(f"{page}?error={quote(error.message)}")
        log.info("console action", extra={"job_id": job.job_id, "action": action})
        return self._redirect(f"{page}?done={action}")

    # --- a new job ---------------------------------------------------------------------------------------
    def new_page(
        self, form_token: str, *, values: dict[str, str] | None = None, error: str = "", status: int = 200
    ) -> dict[str, Any]:
        defaults = {str(k): str(v) for k, v in self.api.settings.defaults.items()}
        values = {**defaults, **(values or {})}
        channel = values.get("ChannelType", "whatsapp").lower()
        channels = "".join(
            f'<option value="{c.value}"{" selected" if c.value == channel else ""}>{c.value}</option>'
            for c in ChannelType
        )

        def field(name: str, label: str, hint: str) -> str:
            return (
                f'<label for="{name}">{e(label)}<span class="hint" id="{name}-hint">{e(hint)}</span></label>'
                f'<input type="text" id="{name}" name="{name}" value="{e(values.get(name, ""))}" '
                f'aria-describedby="{name}-hint">'
            )

        alert = f'<p class="error" role="alert" id="form-error">{e(error)}</p>' if error else ""
        limit = self.api.api.max_body // (1024 * 1024)
        body = (
            f"<h1>New job</h1>{alert}"
            f'<form method="post" action="{PREFIX}/new" enctype="multipart/form-data">{_hidden(form_token)}'
            "<fieldset><legend>Recipients</legend>"
            '<label for="file">A CSV or Excel (.xlsx) file<span class="hint" id="file-hint">one row per '
            f"recipient; up to {limit} MiB here (bigger: upload it to the bucket and name it below)"
            "</span></label>"
            '<input type="file" id="file" name="file" aria-describedby="file-hint" '
            'accept=".csv,.txt,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet">'
            + field("source", "or an object in the bucket", "e.g. incoming/march.csv or oss://bucket/key")
            + "</fieldset><fieldset><legend>Message</legend>"
            '<label for="ChannelType">Channel</label>'
            f'<select id="ChannelType" name="ChannelType">{channels}</select>'
            + "".join(field(*spec) for spec in _OPTION_FIELDS)
            + "</fieldset><fieldset><legend>Reading the file (optional)</legend>"
            + "".join(field(*spec) for spec in _INTAKE_FIELDS)
            + '</fieldset><button class="primary" type="submit" id="preview">Preview</button>'
            '<p class="hint">Nothing is sent before you confirm on the next page.</p></form>'
        )
        return self._html(status, _page("New job", body, form_token=form_token))

    def preview(self, event: HttpEvent, form_token: str) -> dict[str, Any]:
        if len(event.body_bytes()) > self.api.api.max_body:
            raise _Refusal(413, "the file is too large to upload here: put it in the bucket and name it")
        form = parse_form(event)
        self._check_form(form, form_token)
        values = {name: form.get(name) for name in form.fields if name != "form_token"}
        chosen = {k: v for k, v in values.items() if v and k != "source"}
        try:
            options, intake = resolve_options(
                [
                    ("the form", chosen),
                    ("the function's CHATAPP_DEFAULT_* environment", self.api.settings.defaults),
                ]
            )
        except OptionsError as error:
            return self.new_page(form_token, values=values, error=str(error), status=400)
        upload = form.files.get("file")
        try:
            location = self._source(upload, form.get("source"))
        except _Refusal as refusal:
            return self.new_page(form_token, values=values, error=refusal.message, status=refusal.status)
        from chatapp_mass.entry.http_api import ApiError, Submission

        try:  # the API's own preview of an OSS source (POST /jobs?preview=true): read once, nothing stored
            preview = self.api.preview(Submission(source=location.url), None, options, intake)
        except ApiError as error:
            return self.new_page(form_token, values=values, error=error.message, status=error.status)
        return self._html(
            200,
            _page(
                "Preview", self._preview_body(preview, location, values, form_token), form_token=form_token
            ),
        )

    def _source(self, upload: Upload | None, named: str) -> OssLocation:
        if upload is not None and upload.data:
            safe = re.sub(r"[^A-Za-z0-9._-]+", "-", upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
            day = datetime.fromtimestamp(self.clock(), tz=timezone.utc).strftime("%Y%m%d")
            key = f"{UPLOAD_PREFIX}{day}/{secrets.token_hex(8)}/{safe.strip('.-') or 'recipients.csv'}"
            location = OssLocation(self.api.settings.bucket, key)
            try:
                self.api.oss.put(location, upload.data, content_type="application/octet-stream")
            except SourceError as error:
                raise _Refusal(503, f"the upload could not be stored in {location.url}: {error}") from None
            return location
        if not named:
            raise _Refusal(400, "choose a file, or name an object in the bucket")
        from chatapp_mass.entry.http_api import ApiError

        try:
            return self.api.location_of(named)  # as POST /jobs reads a "source"
        except ApiError as error:
            raise _Refusal(error.status, error.message) from None

    def _preview_body(
        self, preview: Any, location: OssLocation, values: dict[str, str], form_token: str
    ) -> str:
        hidden = "".join(
            f'<input type="hidden" name="{e(name)}" value="{e(value)}">'
            for name, value in {**values, "source": location.url, "nonce": secrets.token_hex(16)}.items()
            if value
        )
        valid = int(preview.valid)
        confirm = (
            f'<form method="post" action="{PREFIX}/confirm">{_hidden(form_token)}{hidden}'
            f'<button class="primary" type="submit" id="confirm">Send to {valid:,} recipients</button> '
            f'<a href="{PREFIX}/new">Back: change the file or the options</a></form>'
            if valid
            else f'<p class="error" role="alert">No valid recipient: nothing to send. <a href="{PREFIX}/new">'
            "Back</a></p>"
        )
        return f"<h1>Preview</h1><p>Nothing has been sent.</p>{preview_html(preview, location.url)}{confirm}"

    def confirm(self, event: HttpEvent, form_token: str) -> dict[str, Any]:
        form = parse_form(event)
        self._check_form(form, form_token)
        nonce, source = form.get("nonce"), form.get("source")
        if not re.fullmatch(r"[0-9a-f]{32}", nonce) or not source.startswith("oss://"):
            raise _Refusal(400, "this confirmation is incomplete: start again from New job")
        chosen = {
            k: form.get(k) for k in form.fields if k not in ("form_token", "nonce", "source") and form.get(k)
        }
        try:
            options, intake = resolve_options(
                [
                    ("the form", chosen),
                    ("the function's CHATAPP_DEFAULT_* environment", self.api.settings.defaults),
                ]
            )
        except OptionsError as error:
            raise _Refusal(400, str(error)) from None
        job_id = "c" + hashlib.sha256(nonce.encode("ascii")).hexdigest()[:23]
        if self.api.store.get_job(job_id) is None:  # a second click finds the job the first one made
            fingerprint = (
                "sha256:" + hashlib.sha256(json.dumps([source, chosen], sort_keys=True).encode()).hexdigest()
            )
            from chatapp_mass.entry.http_api import ApiError

            try:
                self.api.submit_source(job_id, source, options, intake, fingerprint, 0.0)
            except ApiError as error:  # the object is gone since the preview, or the form was altered
                raise _Refusal(error.status, error.message) from None
            log.info("console job submitted", extra={"job_id": job_id})
        return self._redirect(f"{PREFIX}/jobs/{quote(job_id)}")


def preview_html(preview: Preview, source: str) -> str:
    """The preview (:class:`~chatapp_mass.services.preview.Preview`) as the console shows it."""
    template = preview.template_code or preview.template_name or ""
    facts = (
        ("Source", source),
        ("Channel", preview.channel),
        ("Template", template),
        ("Language", preview.language),
        ("From", preview.from_),
    )
    counts = (
        ("preview-rows", "Rows read", preview.rows),
        ("preview-valid", "Valid recipients (to be sent)", preview.valid),
        ("preview-invalid", "Invalid rows (not sent)", preview.invalid),
        ("preview-duplicate", "Duplicates (sent once)", preview.duplicate),
        ("preview-batches", "Requests to CAMS", preview.batches),
    )
    parts = [
        f"<dl>{''.join(f'<dt>{e(k)}</dt><dd>{e(str(v))}</dd>' for k, v in facts)}</dl>",
        '<table id="preview-counts">'
        + "".join(
            f'<tr><th scope="row">{e(label)}</th><td class="n" id="{key}">{value:,}</td></tr>'
            for key, label, value in counts
        )
        + "</table>",
    ]
    if preview.reasons:
        groups = "".join(
            f"<tr><td><code>{e(group.code)}</code></td><td>{e(group.message)}</td>"
            f'<td class="n">{group.count:,}</td><td>'
            + "<br>".join(f"line {ex.line}: {e(ex.to) or '(empty)'}" for ex in group.examples)
            + "</td></tr>"
            for group in preview.reasons
        )
        parts.append(
            '<h2>Rows that will not be sent</h2><table id="preview-reasons"><thead><tr><th scope="col">Reason'
            '</th><th scope="col">What is wrong</th><th scope="col">Rows</th><th scope="col">For example'
            f"</th></tr></thead><tbody>{groups}</tbody></table>"
        )
    if preview.params:
        keys = "".join(
            f"<tr><td><code>{e(key.name)}</code></td><td class='n'>{key.missing:,}</td>"
            f"<td class='n'>{key.empty:,}</td></tr>"
            for key in preview.params
        )
        parts.append(
            '<h2>Template parameters</h2><table id="preview-params"><thead><tr><th scope="col">Key</th>'
            '<th scope="col">Recipients without it</th><th scope="col">Recipients with it empty</th></tr>'
            f"</thead><tbody>{keys}</tbody></table>"
        )
    if preview.sample is not None:
        request = json.dumps(preview.sample.request, indent=2, ensure_ascii=False)
        parts.append(
            f"<h2>One recipient's request (line {preview.sample.line})</h2>"
            f'<pre id="preview-sample">{e(request)}</pre>'
        )
    return "".join(parts)


def _delivery_funnel(delivery: Any) -> tuple[str, bool]:
    """The delivery funnel (accepted -> delivered -> read, and failed), from the receipts the job's status
    counts (``delivery``), and whether receipts are still awaited (accepted with no final outcome yet)."""
    if not isinstance(delivery, dict) or not delivery.get("accepted"):
        return "", False
    accepted = int(delivery.get("accepted") or 0)
    steps = (
        ("accepted", "Accepted by CAMS", accepted),
        ("delivered", "Delivered (read included)", int(delivery.get("delivered") or 0)),
        ("read", "Read", int(delivery.get("read") or 0)),
        ("failed_delivery", "Failed after acceptance", int(delivery.get("failed") or 0)),
        ("awaiting", "No receipt yet", int(delivery.get("awaiting") or 0)),
    )
    rows = "".join(
        f'<tr><th scope="row">{e(label)}</th><td class="n" id="{name}">{value:,}</td>'
        f'<td class="n">{value / accepted:.1%}</td>'
        f'<td><progress max="{accepted}" value="{value}" aria-label="{e(label)}"></progress></td></tr>'
        for name, label, value in steps
    )
    codes = delivery.get("failed_codes") or {}
    why = "".join(f"<li>{e(str(code))}: {int(n):,}</li>" for code, n in list(codes.items())[:5])
    return (
        f'<h2>Delivery</h2><table id="delivery">{rows}</table>'
        + (f'<p>Most common failures:</p><ul id="failed-codes">{why}</ul>' if why else ""),
        bool(delivery.get("awaiting")),
    )


def _template(job: JobRecord) -> str:
    return str(job.options.get("TemplateCode") or job.options.get("TemplateName") or "")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _is_https(event: HttpEvent) -> bool:
    proto = event.header("x-forwarded-proto").lower()
    return proto == "https" or (not proto and event.header("host").endswith(".fcapp.run"))


def _same_origin(event: HttpEvent) -> bool:
    """The POST came from a page of this host (a browser sends Origin with every POST; Referer otherwise)."""
    host = event.header("host").lower()
    origin = event.header("origin") or event.header("referer")
    if not host or not origin or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host


def wants_console(path: str) -> bool:
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


def serve(api: JobsApi, event: HttpEvent) -> dict[str, Any]:
    """The api function's HTTP trigger: the console's pages, a browser's link to the API turned to the console's
    page of it (a browser cannot send the bearer header), and every other request to the JSON API."""
    from chatapp_mass.entry.http_api import JOB_PATH, prefers_html
    from chatapp_mass.entry.openapi import OPENAPI_PATH, serve_document

    if event.path.rstrip("/") == OPENAPI_PATH:  # the contract: public, like any API's documentation
        return serve_document(event)
    if wants_console(event.path):
        return Console(api).handle(event)
    if event.method == "GET" and prefers_html(event.header("accept")) and not event.header("authorization"):
        match = JOB_PATH.match(event.path)
        page = (
            f"{PREFIX}/jobs/{quote(match.group(1))}"
            if match is not None and not match.group(2)
            else f"{PREFIX}/"
        )
        return Console._redirect(page)
    return api.handle(event)
