"""`python -m depthcore ...`: the `depthcore` command (`depthcore.cli`)."""

from depthcore.cli import main

main()
