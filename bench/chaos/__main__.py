"""`python -m bench.chaos`: the fault campaign from the command line (see the package's docstring)."""

from bench.chaos.campaign import main

main()
