from chatapp_mass.localcloud.oss.cli import main

raise SystemExit(main())
