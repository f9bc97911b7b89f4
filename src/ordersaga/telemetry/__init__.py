"""Telemetry plumbing that knows nothing of sagas: histograms, the metrics endpoint, logs, traces.

* :mod:`.histogram` — a cheap bucket histogram for the hot path (no Prometheus import).
* :mod:`.exposition` — a per-process Prometheus registry of collector functions, rendered at
  ``GET /metrics`` (imports ``prometheus_client``: only processes that serve metrics load it).
* :mod:`.logs` — ``--log-format json``: one JSON object per log record or event.
* :mod:`.tracing` — optional OpenTelemetry tracing and the W3C ``traceparent`` header.

The layers above turn their own counters into metric families (``ordersaga.saga.metrics``,
``ordersaga.participant.metrics``, ...); this package only carries them.
"""
