"""ChatApp Mass Sender: mass-send ChatApp templates through Alibaba Cloud CAMS, from a CLI or Function Compute.

The folders are the layers; imports point down only (``tests/unit/test_architecture.py`` checks it)::

    entry/     the ways in: ``cli`` (+ ``send``, ``demo``), ``handlers`` (the FC functions), ``http_api``,
               ``bootstrap`` (the one composition root), ``localcloud``/``invoke`` (the emulators' commands)
    services/  the jobs: ``plan``, ``dispatch``, ``reconcile``, ``jobs`` (serverless job lifecycle and
               settings), ``ingest``, ``sender``, ``timer``, ``report``, ``lease``, ``parts``, ``ratelimit``
    adapters/  each SDK wrapped once: ``cams``, ``oss``, ``fc`` (invoking functions), ``openapi``
    store/     ``interface`` (records, statuses, ``Store``), ``sqlite``, ``tablestore``
    runtime/   ``env`` (every variable read), ``logs`` (JSON lines, masked numbers), ``faults`` (crash points)
    core/      pure domain: ``options``, ``phones``, ``intake``, ``planning``, ``outcomes``, ``errors``
    deploy/    build-time tools, never shipped: ``packaging`` (FC code packages), ``validate`` (s.yaml)

The loopback emulators of CAMS, OSS, Tablestore and FC are a package of their own beside this one
(``alibaba_localcloud``); nothing here imports them except ``entry.localcloud``, ``entry.invoke``,
``entry.demo`` and ``deploy``.
"""

__version__ = "0.1.0"
