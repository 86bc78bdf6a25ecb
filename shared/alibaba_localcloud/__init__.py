"""Loopback emulators of the Alibaba Cloud services the product uses, moto-style.

Each service package has ``models.py`` (state and rules), ``responses.py`` (HTTP parsing, signature
checks, reply shaping), ``exceptions.py`` (the real error codes) and ``server.py`` (a threaded server on
127.0.0.1, port 0 by default). The real SDKs talk to them over HTTP. Importing this package starts nothing.
What the services share lives once: ``_http.py`` (the threaded server, the start/stop life, the parsed
request), ``_accounts.py`` (credentials and accounts) and ``_errors.py`` (the error base, errors by code).
"""
