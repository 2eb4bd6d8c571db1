"""Database layer: models, engine, pgqueuer schema and the repository (all SQL lives here)."""
