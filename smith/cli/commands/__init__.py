"""One module per `smith` command, imported only when that command runs (smith.cli.main)."""
