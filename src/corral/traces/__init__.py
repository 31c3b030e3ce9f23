"""Importers: each turns one public trace format into the canonical job table."""
