"""``import triton_python_backend_utils`` outside the server (a model's own unit tests, an IDE):
the python backend's pb_utils, as the same module object the server gives ``model.py`` files.

Installed as a top-level module with ``wheel.packages = ["python/tritonlite",
"python/triton_python_backend_utils.py"]``; the server does not need it (it puts pb_utils in
``sys.modules`` under this name before importing a model).
"""

import sys

from tritonlite.backends.python import pb_utils as _pb_utils

sys.modules[__name__] = _pb_utils
