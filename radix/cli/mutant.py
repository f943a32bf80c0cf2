"""`python -m radix.cli.mutant MUTATION node ...`: `radix node` with one deliberate bug applied, a test build
for the fault suite (`radix.tools.chaos.mutations`). Never run it in production."""

import sys

from radix.cli import main
from radix.tools.chaos.mutations import mutate

mutate(sys.argv[1])
sys.exit(main(sys.argv[2:]))
