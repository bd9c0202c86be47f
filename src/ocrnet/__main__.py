from ocrnet.cli import main

raise SystemExit(main())
