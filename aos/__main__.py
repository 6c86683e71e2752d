"""`python -m aos` is the `aos` command (what `aos dev` uses to start its children)."""

from aos.cli.main import cli

cli(prog_name="aos")
