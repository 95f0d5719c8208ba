import sys

from diarist.cli import main

sys.exit(main())
