"""The `dataloader` command line: a client of the HTTP API that never touches the database."""
