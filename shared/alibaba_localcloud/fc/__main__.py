"""``python -m alibaba_localcloud.fc``: run the local FC emulator until interrupted (see :mod:`.cli`)."""

from alibaba_localcloud.fc.cli import main

raise SystemExit(main())
