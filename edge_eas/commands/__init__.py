"""One module per CLI sub-command: `add_arguments(parser)` and `run(args) -> int`.
Heavy imports (torch) happen inside `run` so the CLI starts fast."""
