"""Bundled games."""
