from chatapp_mass.cli import main

raise SystemExit(main())
