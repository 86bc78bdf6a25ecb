"""Every environment variable the product reads, in one place."""

CHATAPP_STORE = "CHATAPP_STORE"  # default --store URL
CHATAPP_CAMS_ENDPOINT = "CHATAPP_CAMS_ENDPOINT"  # http://127.0.0.1:8123 or a bare host (HTTPS)
CHATAPP_CAMS_PARAMS_IN = (
    "CHATAPP_CAMS_PARAMS_IN"  # body (default: SenderList in a form body) | query (in the URL)
)
ALIBABA_CLOUD_REGION_ID = "ALIBABA_CLOUD_REGION_ID"  # default ap-southeast-1
ALIBABA_CLOUD_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ALIBABA_CLOUD_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ALIBABA_CLOUD_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ALIBABA_CLOUD_ECS_METADATA_DISABLED = "ALIBABA_CLOUD_ECS_METADATA_DISABLED"
CHATAPP_LOG_LEVEL = "CHATAPP_LOG_LEVEL"
CHATAPP_TABLESTORE_ENDPOINT = (
    "CHATAPP_TABLESTORE_ENDPOINT"  # default https://INSTANCE.REGION.ots.aliyuncs.com
)
CHATAPP_OSS_ENDPOINT = "CHATAPP_OSS_ENDPOINT"  # default https://oss-REGION.aliyuncs.com
# the bucket's region (V4 signing); default: the endpoint's, FC_REGION, ALIBABA_CLOUD_REGION_ID
CHATAPP_OSS_REGION = "CHATAPP_OSS_REGION"
CHATAPP_TABLE_PREFIX = "CHATAPP_TABLE_PREFIX"  # Tablestore table name prefix (default chatapp_)

DEFAULT_REGION = "ap-southeast-1"
DEFAULT_STORE = "sqlite:///chatapp-mass.db"

# --- the functions (Function Compute) ---------------------------------------------------------------------
CHATAPP_FC_ENDPOINT = (
    "CHATAPP_FC_ENDPOINT"  # http://127.0.0.1:PORT (local FC); default ACCOUNT.REGION.fc.aliyuncs.com
)
CHATAPP_BUCKET = "CHATAPP_BUCKET"  # the bucket uploads land in and reports go to
CHATAPP_INCOMING_PREFIX = "CHATAPP_INCOMING_PREFIX"  # default incoming/
CHATAPP_REPORTS_PREFIX = "CHATAPP_REPORTS_PREFIX"  # default reports/
CHATAPP_QPS = "CHATAPP_QPS"  # account-wide attempts per sliding second, default 10
CHATAPP_SENDER_FUNCTION = "CHATAPP_SENDER_FUNCTION"  # default chatapp-mass-sender
CHATAPP_DISPATCH = "CHATAPP_DISPATCH"  # drain (default) | per-batch
CHATAPP_SENDERS = "CHATAPP_SENDERS"  # drain mode: sender invocations per job, default 1
CHATAPP_SENDER_CONCURRENCY = "CHATAPP_SENDER_CONCURRENCY"  # calls in flight per sender invocation
CHATAPP_BATCH_SIZE = "CHATAPP_BATCH_SIZE"  # recipients per call, default 1000
CHATAPP_DEFAULT_PREFIX = (
    "CHATAPP_DEFAULT_"  # CHATAPP_DEFAULT_CHANNEL_TYPE, ..._TEMPLATE_CODE: job option defaults
)
FC_ACCOUNT_ID = "FC_ACCOUNT_ID"
FC_REGION = "FC_REGION"

# --- the HTTP API and the timer ---------------------------------------------------------------------------
CHATAPP_API_URL = "CHATAPP_API_URL"  # the api function's HTTP trigger (written by chatapp-mass local-cloud)
# comma-separated scope:sha256hex entries (scope read|send|admin): the API's tokens, stored as hashes
CHATAPP_API_TOKENS = "CHATAPP_API_TOKENS"
# deprecated: one plain token, counted as an admin token (a secret: never logged); at least 32 characters
CHATAPP_API_TOKEN = "CHATAPP_API_TOKEN"
# optional: a secret mixed into the console's session key (else sessions are keyed by the token entries alone)
CHATAPP_CONSOLE_SECRET = "CHATAPP_CONSOLE_SECRET"
# receipts (issue 17): the secret a receipt push URL carries (?key=); POST /receipts, /receipts/mns, /inbound
# (at least 16 characters); the local cloud points the local CAMS's pushes at the api function with it
CHATAPP_RECEIPT_KEY = "CHATAPP_RECEIPT_KEY"
# comma-separated words that, alone in an inbound message, opt its sender out (default STOP,UNSUBSCRIBE,...)
CHATAPP_STOP_WORDS = "CHATAPP_STOP_WORDS"
CHATAPP_API_AUTH = "CHATAPP_API_AUTH"  # token (default) | fc (the HTTP trigger's function auth is enough)
CHATAPP_API_MAX_BODY = "CHATAPP_API_MAX_BODY"  # bytes, default 6 MiB
CHATAPP_API_REPEAT_WINDOW = (
    "CHATAPP_API_REPEAT_WINDOW"  # seconds an identical submission is refused, default 600
)
# bytes: a finished job's report object larger than this is answered 302 to a presigned OSS URL, default 1 MiB
CHATAPP_REPORT_INLINE_MAX = "CHATAPP_REPORT_INLINE_MAX"
CHATAPP_API_RECONCILE_SECONDS = (
    "CHATAPP_API_RECONCILE_SECONDS"  # seconds one reconcile request may look up, default 60
)
CHATAPP_INGEST_FUNCTION = (
    "CHATAPP_INGEST_FUNCTION"  # default chatapp-mass-ingest (plans OSS-sourced API jobs)
)
# seconds after a job finished with uncertain batches that a sender looks them up (0: never), default 60
CHATAPP_RECONCILE_AFTER = "CHATAPP_RECONCILE_AFTER"
CHATAPP_CLAIM_TTL = "CHATAPP_CLAIM_TTL"  # seconds a sender's claim on a batch lasts, default 90
CHATAPP_SWEEP_IDLE = (
    "CHATAPP_SWEEP_IDLE"  # seconds without a batch change before the timer starts a sender, default 120
)
CHATAPP_RATE_MARGIN = "CHATAPP_RATE_MARGIN"  # least margin added to the 1 s window, default 0.01 (ratemargin)
CHATAPP_ERROR_THRESHOLD = (
    "CHATAPP_ERROR_THRESHOLD"  # pause a job above this share of failed recipients (0.2, 20%; 0 = off)
)
# WhatsApp's messaging limit per From number: recipients per rolling 24 h, e.g.
# 8613800000000=10000,8613900000000=2K,default=unlimited (tiers 250, 1K, 2K, 10K, 100K, unlimited; core.messaging)
CHATAPP_MESSAGING_LIMITS = "CHATAPP_MESSAGING_LIMITS"

# --- retention (issue 17) ---------------------------------------------------------------------------------
# days a finished job's rows, batches and receipts are kept (default 30; 0 = keep forever): SQLite purges them
# (`chatapp-mass purge`, the timer), Tablestore expires them (the tables' time to live, set by init-tables)
CHATAPP_RETENTION_DAYS = "CHATAPP_RETENTION_DAYS"
