"""A PyTriton-compatible API: bind a Python function as a model (``tritonlite.pytriton``).

The modules mirror PyTriton's public ones (``triton``, ``model_config``, ``decorators``,
``client``, ``exceptions``) so that a PyTriton script runs when its imports change from
``pytriton.`` to ``tritonlite.pytriton.``. The bound function runs in-process on the model's
instance workers (``function_backend``), batched by the C++ core's dynamic batcher, or with
``ModelConfig(isolated=True)`` in a stub process per instance (``isolated``).
``typed_function`` is the short path (``@tritonlite.function``); ``serve_module`` is
``tritonlite serve APP``.
"""
