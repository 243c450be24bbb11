"""Shared test setup. pytest puts this folder on sys.path, so the seeded generators import as ``fixtures``."""
