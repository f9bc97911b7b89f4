"""OTLP export (the ``otel`` extra's opentelemetry-exporter-otlp-proto-http), turned on by the
standard ``OTEL_*`` variables: the spans of a run reach a real OTLP/HTTP receiver over loopback,
and a run whose collector is down still runs (its outcomes are exactly the same)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ordersaga
from tests.integration.http.conftest import free_port

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

ORDERS = "".join(
    f"Order otlp-{i}, User 456, Items: [{{A, 1}}], Payment: PayPal, Address: 1 Main St, Paris, FR\n"
    for i in range(3)
)


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/v1/traces":
            self.server.bodies.append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.bodies  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_otel_variables_export_a_runs_spans_to_an_otlp_collector(
    tmp_path: Path, collector: tuple[str, list[bytes]]
) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    url, bodies = collector
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": url, "OTEL_SERVICE_NAME": "shop-run"}
    done = ordersaga("run", "--data-dir", tmp_path / "d", input=ORDERS, env=env)
    assert done.code == 0, done.err
    assert done.out.splitlines() == [f"Order otlp-{i} confirmed" for i in range(3)]
    names: set[str] = set()
    services: set[str] = set()
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for attribute in resource.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource.scope_spans:
                names.update(span.name for span in scope.spans)
    assert services == {"shop-run"}
    assert any("otlp-0" in name or name.startswith("saga") for name in names), names
    assert len(names) >= 2, names


def test_a_run_with_its_collector_down_still_runs(tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nobody listens
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
    }
    done = ordersaga("run", "--data-dir", tmp_path / "d", input=ORDERS, env=env, timeout=60)
    assert done.code == 0, done.err
    assert done.out.splitlines() == [f"Order otlp-{i} confirmed" for i in range(3)]
    assert "Traceback" not in done.err
