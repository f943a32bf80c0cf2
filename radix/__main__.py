"""`python -m radix` runs the `radix` command line."""

import sys

from radix.cli import main

sys.exit(main())
