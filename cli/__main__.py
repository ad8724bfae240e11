"""`python -m cli ...` is `cpfd ...`."""

from cli.main import main

main()
