from factlearn.cli import main

raise SystemExit(main())
