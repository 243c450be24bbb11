"""Thin entry points of solarscan: the command line and the HTTP service."""
