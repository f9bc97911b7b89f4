"""The telemetry plumbing: histogram buckets, the JSON formatter, when tracing turns on."""

from __future__ import annotations

import io
import json
import logging

import pytest

from ordersaga.telemetry.histogram import Histogram
from ordersaga.telemetry.logs import JsonFormatter, emit
from ordersaga.telemetry.tracing import TracingSettings, inject_current, open_tracing


def test_histogram_buckets_are_cumulative_and_upper_bounds_inclusive() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert histogram.count == 5 and histogram.sum == pytest.approx(8.65)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def test_json_formatter_writes_one_object_per_record_events_and_plain_ones() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ordersaga.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        emit(logger, "step", order_id="1001", step="reserve", attempt=2, odd={1, 2}, skip=None)
        logger.warning("plain %s\nsecond line", "text")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    step, plain, failed = map(json.loads, lines)
    assert step["event"] == "step" and step["order_id"] == "1001" and step["attempt"] == 2
    assert step["odd"] == "{1, 2}" and "skip" not in step and step["level"] == "info"
    assert plain == {**plain, "event": "log", "message": "plain text\nsecond line"}
    assert failed["error"] == "RuntimeError: boom"


def test_tracing_is_off_unless_asked_for() -> None:
    assert not TracingSettings.from_env({}).enabled
    assert open_tracing(TracingSettings.from_env({})) is None
    assert TracingSettings.from_env({}, flag=True).exporter == "console"
    on = TracingSettings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SERVICE_NAME": "shop"}
    )
    assert on.enabled and on.exporter == "otlp" and on.service_name == "shop"
    assert not TracingSettings.from_env({"OTEL_TRACES_EXPORTER": "none"}, flag=True).enabled
    assert not TracingSettings.from_env(
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    ).enabled
    headers: dict[str, str] = {}
    inject_current(headers)  # no span is current: nothing is added
    assert headers == {}
