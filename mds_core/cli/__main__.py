import sys

from mds_core.cli.main import main

sys.exit(main())
