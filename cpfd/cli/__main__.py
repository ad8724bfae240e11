"""`python -m cpfd.cli ...` is `cpfd ...`."""

from cpfd.cli.main import main

main()
