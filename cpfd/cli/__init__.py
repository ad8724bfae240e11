"""The `cpfd` command line: a thin composition layer over the pipelines, benchmarks, monitoring,
serving, the feature store glue and the cpfd library. ``cpfd.cli.main`` builds the Typer app from one
module per command group; heavy libraries are imported inside the commands, so it starts fast."""
