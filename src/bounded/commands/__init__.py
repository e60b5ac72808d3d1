"""The `bounded` subcommands. Each module adds its commands with `register(app)` and
imports what a command needs inside the command, so starting the CLI stays fast."""
