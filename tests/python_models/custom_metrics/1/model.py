"""Custom metrics (Triton's custom_metrics example, reduced): a counter of input elements,
a gauge with the last sum, a histogram of values; TOTAL is the counter's value()."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        labels = {"model": args["model_name"], "version": args["model_version"]}
        # Keep the families: Triton deletes a family (and invalidates its metrics) with its
        # Python object.
        self.families = [
            pb_utils.MetricFamily(
                name="test_elements_total_count",
                description="Input elements seen",
                kind=pb_utils.MetricFamily.COUNTER,
            ),
            pb_utils.MetricFamily(
                name="test_last_sum",
                description="Sum of the last input",
                kind=pb_utils.MetricFamily.GAUGE,
            ),
            pb_utils.MetricFamily(
                name="test_values", description="Input values", kind=pb_utils.MetricFamily.HISTOGRAM
            ),
        ]
        self.counter = self.families[0].Metric(labels=labels)
        self.gauge = self.families[1].Metric(labels=labels)
        self.histogram = self.families[2].Metric(labels=labels, buckets=[1.0, 10.0])
        self.errors = []
        try:
            self.counter.set(5)  # counters cannot be set
        except pb_utils.TritonModelException as e:
            self.errors.append(str(e))
        family = pb_utils.MetricFamily(
            name="test_temporary", description="Deleted at once", kind=pb_utils.MetricFamily.GAUGE
        )
        orphan = family.Metric(labels={})
        del family  # deleting a family invalidates its metrics
        try:
            orphan.set(1)
        except pb_utils.TritonModelException as e:
            self.errors.append(str(e))

    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            self.counter.increment(values.size)
            self.gauge.set(float(values.sum()))
            for v in values:
                self.histogram.observe(float(v))
            pb_utils.Logger.log_info(f"custom_metrics saw {values.size} values")
            if len(self.errors) != 2 or "has been deleted" not in self.errors[1]:
                raise pb_utils.TritonModelException(f"unexpected metric errors: {self.errors}")
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("TOTAL", np.array([self.counter.value()], np.float64))]
                )
            )
        return responses
