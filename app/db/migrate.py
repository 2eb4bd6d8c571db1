"""Run Alembic programmatically (sync; call it from a thread inside an event loop)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(sqlalchemy_url: str, queue_schema: str) -> Config:
    """An Alembic config aimed at one database and queue schema."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["sqlalchemy_url"] = sqlalchemy_url
    config.attributes["queue_schema"] = queue_schema
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(sqlalchemy_url: str, queue_schema: str) -> None:
    """Apply every migration not yet applied."""
    command.upgrade(alembic_config(sqlalchemy_url, queue_schema), "head")


def downgrade_to_base(sqlalchemy_url: str, queue_schema: str) -> None:
    """Revert every migration."""
    command.downgrade(alembic_config(sqlalchemy_url, queue_schema), "base")
