"""``python -m alibaba_localcloud.cams``: run the local CAMS emulator until interrupted (see :mod:`.cli`)."""

from alibaba_localcloud.cams.cli import main

raise SystemExit(main())
