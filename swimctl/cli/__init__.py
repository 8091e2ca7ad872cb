"""The `swimctl` command line: one typer app, one module per subcommand."""
