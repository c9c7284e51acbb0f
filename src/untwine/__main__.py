from untwine.cli import main

raise SystemExit(main())
