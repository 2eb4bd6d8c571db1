"""Background services that run on the elected leader only."""
