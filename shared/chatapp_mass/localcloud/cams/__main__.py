from chatapp_mass.localcloud.cams.cli import main

raise SystemExit(main())
