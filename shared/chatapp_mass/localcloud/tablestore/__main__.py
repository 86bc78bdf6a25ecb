from chatapp_mass.localcloud.tablestore.cli import main

raise SystemExit(main())
