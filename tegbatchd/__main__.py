from tegbatchd.cli import main

raise SystemExit(main())
