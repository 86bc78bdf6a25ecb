"""ChatApp Mass Sender: the domain core shared by the CLI and the Function Compute functions.

Layout (parse -> decide -> act):
- ``options``   pydantic models of a job's options and of one recipient (the API's parameters)
- ``intake``    streaming CSV reader: header rules, row validation, number normalization, de-duplication
- ``planning``  pure batch planning (count and encoded-size bounds)
- ``outcomes``  the one place every CAMS reply or transport failure is classified
- ``cams``      the wrapped official SDK client (``CamsClient.send``)
- ``ratelimit`` the account-wide sliding-window limiter (state in the store)
- ``store``     the store interface; ``store_sqlite`` its SQLite implementation
- ``engine``    plans a job into the store and dispatches its batches
- ``report``    the per-recipient report
- ``bootstrap`` the composition root; ``cli`` the command line
- ``localcloud`` loopback emulators (CAMS) that the real SDKs talk to
"""

__version__ = "0.1.0"
