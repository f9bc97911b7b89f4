"""Tracing across the orchestrator and the services, continued after a takeover.

The three services are real HTTP servers (uvicorn, in this process) with tracing, the engine
talks to them through the HTTP transport, and every span lands in the OpenTelemetry SDK's
in-memory exporter (an explicit provider: no global state). The first engine stops in the
middle of each saga, as a worker that dies would (its task is cancelled as the second step is
sent); a second engine on the same saga log resumes them, as a worker taking over does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ordersaga.orders.demo import demo_world
from ordersaga.orders.order_saga import ORDER_SAGA, ORDER_SAGA_NAME
from ordersaga.participant.http import create_app
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.recovery import recover
from ordersaga.saga.spans import TRACE_KEY, SagaSpans, saga_trace_ids
from ordersaga.saga.store import open_store
from ordersaga.saga.store.base import SagaStatus
from ordersaga.services.factory import ServiceConfigs, open_service
from ordersaga.telemetry.tracing import Tracing
from ordersaga.transport.base import Transport
from ordersaga.transport.http import HttpTransport
from tests.integration.http.conftest import SERVICES, free_port

ORDERS = ("t-1", "t-2", "t-3")


def _order(order_id: str) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "user_id": 456,
        "items": [{"item_id": "A", "quantity": 1}],
        "payment_info": {"method": "PayPal"},
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
    }


@contextlib.asynccontextmanager
async def _services(tmp: Path, tracing: Tracing) -> AsyncIterator[dict[str, str]]:
    world = demo_world()
    configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
    urls: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in SERVICES:
            service = await open_service(name, f"sqlite:///{tmp / name}.db", configs)
            stack.push_async_callback(service.close)
            port = free_port()
            app = create_app(service, name=name, tracing=tracing)
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())

            async def stop(server: uvicorn.Server = server, task: Any = task) -> None:
                server.should_exit = True
                await task

            stack.push_async_callback(stop)
            while not server.started:
                assert not task.done(), "a service failed to start"
                await asyncio.sleep(0.01)
            urls[name] = f"http://127.0.0.1:{port}"
        yield urls


class _DiesAtShipping(Transport):
    """Cancels the runner's task as it sends the second step: a worker dying mid-saga."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, command: Command) -> Reply:
        if command.action == "prepare":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        return await self.inner.send(command)

    async def probe(self, service: str, key: str) -> Probe:
        return await self.inner.probe(service, key)

    async def close(self) -> None:
        await self.inner.close()


async def test_one_trace_per_order_across_services_and_a_takeover(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    log_url = f"sqlite:///{tmp_path / 'sagas.db'}"
    async with _services(tmp_path, tracing) as urls:
        # The first runner: t-1 is submitted under a request's span (kept in the log),
        # t-2 and t-3 under none (their trace comes from their id). Each dies at shipping.
        store = await open_store(log_url)
        dying = _DiesAtShipping(HttpTransport(urls))
        first = SagaEngine(store, dying, [ORDER_SAGA], observer=SagaSpans(tracing))
        for order_id in ORDERS:
            request = tracing.span("checkout") if order_id == "t-1" else contextlib.nullcontext()
            with request, pytest.raises(asyncio.CancelledError):
                await first.start(ORDER_SAGA_NAME, order_id, _order(order_id), f"fp-{order_id}")
        stored = await store.load("t-1")
        assert stored is not None and stored.status is SagaStatus.RUNNING
        assert isinstance(stored.input.get(TRACE_KEY), str)
        await dying.close()
        await store.close()

        # The second runner takes every saga over from the log and finishes it.
        store = await open_store(log_url)
        transport = HttpTransport(urls)
        second = SagaEngine(store, transport, [ORDER_SAGA], observer=SagaSpans(tracing))
        try:
            results = await recover(second)
        finally:
            await transport.close()
            await store.close()
        assert sorted((r.saga_id, r.status) for r in results) == [
            (order_id, SagaStatus.CONFIRMED) for order_id in ORDERS
        ]

    spans = exporter.get_finished_spans()
    by_order: dict[str, set[int]] = {}
    for span in spans:
        saga_id = (span.attributes or {}).get("ordersaga.saga_id")
        if saga_id is not None:
            by_order.setdefault(str(saga_id), set()).add(span.context.trace_id)
    # One trace per order, and no two orders share one.
    assert sorted(by_order) == sorted(ORDERS)
    assert all(len(ids) == 1 for ids in by_order.values()), by_order
    trace_of = {order_id: next(iter(ids)) for order_id, ids in by_order.items()}
    assert len(set(trace_of.values())) == len(ORDERS)
    assert trace_of["t-2"] == saga_trace_ids("t-2")[0]
    checkout = [s for s in spans if s.name == "checkout"]
    assert len(checkout) == 1 and checkout[0].context.trace_id == trace_of["t-1"]

    for order_id, trace_id in trace_of.items():
        in_trace = [s for s in spans if s.context.trace_id == trace_id]
        sagas = [s for s in in_trace if s.name == "saga order"]
        assert len(sagas) == 2, f"{order_id}: the first runner's saga span and the second's"
        steps = {s.name for s in in_trace if s.kind is SpanKind.CLIENT}
        assert {"reserve action", "ship action", "pay action", "capture confirm"} <= steps
        served = [s for s in in_trace if s.kind is SpanKind.SERVER]
        # Every service answered in the trace: reserve, prepare, authorize, and the three
        # confirmations (the dying runner's shipping call never left).
        assert {s.name for s in served} >= {
            "inventory reserve",
            "shipping prepare",
            "payment authorize",
            "inventory commit",
            "shipping schedule",
            "payment capture",
        }
        by_id = {s.context.span_id: s for s in in_trace}
        for span in served:  # each service span is the child of the step span that called it
            assert span.parent is not None and span.parent.span_id in by_id
            assert by_id[span.parent.span_id].kind is SpanKind.CLIENT
