"""`python -m app.client`: the same as the `dataloader` console script."""

from app.client.cli import main

main()
