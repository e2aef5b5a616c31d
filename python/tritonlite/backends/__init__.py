"""Backend plugins: what runs a model's batches (onnxruntime, pytorch, python)."""
