"""``python -m alibaba_localcloud.tablestore``: run the local Tablestore emulator until interrupted (:mod:`.cli`)."""

from alibaba_localcloud.tablestore.cli import main

raise SystemExit(main())
