"""Parity cases, one module per topic; each module lists its cases in ``CASES``."""
