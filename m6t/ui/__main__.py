from m6t.ui.app import main

raise SystemExit(main())
