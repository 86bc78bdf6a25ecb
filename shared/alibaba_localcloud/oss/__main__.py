"""``python -m alibaba_localcloud.oss``: run the local OSS emulator until interrupted (see :mod:`.cli`)."""

from alibaba_localcloud.oss.cli import main

raise SystemExit(main())
