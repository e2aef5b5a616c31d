"""Imported by model.py: the version directory is on sys.path, as in Triton."""

GREETING = "hello from the version directory"
