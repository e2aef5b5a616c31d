"""Decoupled: execute() returns at once and a thread waits (up to 10 s, polling every 10 ms)
for ``response_sender.is_cancelled()``, then sends a final CANCELLED error. Request parameters:
``marker`` (a path prefix: ``<marker>.started`` holds what the sender said at the start,
``<marker>.seen`` what request.is_cancelled() said once the sender said True) and ``wait``
(false: stream one response OUT = [request.is_cancelled(), sender.is_cancelled()] and a
final flag)."""

import json
import os
import threading
import time

import numpy as np
import triton_python_backend_utils as pb_utils


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class TritonPythonModel:
    def initialize(self, args):
        self.threads = []

    def execute(self, requests):
        for request in requests:
            params = json.loads(request.parameters())
            sender = request.get_response_sender()
            if not params.get("wait", True):
                flags = [float(request.is_cancelled()), float(sender.is_cancelled())]
                out = pb_utils.Tensor("OUT", np.array(flags, np.float32))
                sender.send(pb_utils.InferenceResponse([out]))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            write(params["marker"] + ".started", json.dumps(sender.is_cancelled()))
            thread = threading.Thread(target=self.wait, args=(request, sender, params["marker"]))
            thread.start()
            self.threads.append(thread)

    def wait(self, request, sender, marker):
        deadline = time.monotonic() + 10
        while not sender.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        if sender.is_cancelled():
            write(marker + ".seen", json.dumps(request.is_cancelled()))
        error = pb_utils.TritonError("the request was cancelled", pb_utils.TritonError.CANCELLED)
        sender.send(
            pb_utils.InferenceResponse(error=error),
            flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
        )

    def finalize(self):
        for t in self.threads:
            t.join()
