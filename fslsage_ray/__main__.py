from fslsage_ray.cli import main

raise SystemExit(main())
