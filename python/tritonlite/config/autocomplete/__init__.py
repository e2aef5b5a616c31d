"""Auto-complete, per backend: what Triton's server fills from the model directory
(``backend_fields``: backend, platform, default_model_filename) and what each backend's own
auto-complete adds (``onnxruntime``: inputs, outputs, max_batch_size from the ONNX file;
``python``: the model's ``auto_complete_config``, merged as Triton does)."""
