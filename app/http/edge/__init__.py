"""The HTTP edge: limits that hold before and around the application (see docs/security.md)."""
