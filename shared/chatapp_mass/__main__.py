"""``python -m chatapp_mass``: the ``chatapp-mass`` command line (:mod:`chatapp_mass.entry.cli`)."""

from chatapp_mass.entry.cli import main

raise SystemExit(main())
