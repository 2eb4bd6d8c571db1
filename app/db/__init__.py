"""Database layer: one module per table with its named queries, the connection plan, models."""
