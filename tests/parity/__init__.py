"""Side-by-side records of the real Triton and tritonlite (see harness.py)."""
