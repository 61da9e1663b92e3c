"""Bridges: one sub-package per monitoring tool, each a pure decoder plus a thin CLI."""
