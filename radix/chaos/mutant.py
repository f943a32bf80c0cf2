"""`python -m radix.chaos.mutant MUTATION node ...`: `radix node` with one mutation applied (a test build)."""

import sys

from radix.chaos.mutations import mutate
from radix.cli import main

mutate(sys.argv[1])
sys.exit(main(sys.argv[2:]))
