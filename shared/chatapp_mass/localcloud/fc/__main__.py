from chatapp_mass.localcloud.fc.cli import main

raise SystemExit(main())
