from ordersaga.cli import main

raise SystemExit(main())
