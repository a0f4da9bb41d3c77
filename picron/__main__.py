from picron.cli import main

raise SystemExit(main())
