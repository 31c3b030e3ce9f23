"""`python -m corral.cli`, as the `corral` script."""

from corral.cli import main

main()
