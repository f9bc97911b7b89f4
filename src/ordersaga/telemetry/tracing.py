"""Optional OpenTelemetry tracing (``pip install 'ordersaga[otel]'``), off unless configured.

Nothing here imports OpenTelemetry at module level: :func:`open_tracing` does, and only when
tracing is asked for — by a flag (``--trace``) or by the standard ``OTEL_*`` variables (an
exporter or an OTLP endpoint named, and ``OTEL_SDK_DISABLED`` not ``true``). It then uses the
process's TracerProvider when one is set already (an application embedding ordersaga, or
``opentelemetry-instrument``), else builds an SDK provider exporting by ``OTEL_TRACES_EXPORTER``:
``console`` (to stderr) or ``otlp`` (needs ``opentelemetry-exporter-otlp-proto-http``).

Traces cross processes in the W3C ``traceparent`` header (:func:`inject_current` on the way
out, :meth:`Tracing.span` with the received value on the way in), and a saga keeps the one it
belongs to in its log (see :mod:`ordersaga.saga.spans`), so whoever drives it continues it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from ordersaga.errors import ConfigError

__all__ = ["TRACEPARENT", "Tracing", "TracingSettings", "inject_current", "open_tracing"]

TRACEPARENT = "traceparent"
_ON_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Whether to trace, as what service, and where to (read once, at the edge)."""

    enabled: bool = False
    service_name: str = "ordersaga"
    exporter: str = "otlp"  # otlp | console

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, flag: bool = False, service_name: str = "ordersaga"
    ) -> TracingSettings:
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(False)
        exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        if exporter == "none":
            return cls(False)
        enabled = flag or any(environ.get(name, "").strip() for name in _ON_VARIABLES)
        name = environ.get("OTEL_SERVICE_NAME", "").strip() or service_name
        return cls(enabled, name, exporter or ("otlp" if not flag else "console"))


class Tracing:
    """Spans for ordersaga: a tracer and the W3C trace-context propagator."""

    def __init__(self, tracer_provider: Any, *, owned: bool = False) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from ordersaga import __version__

        self._trace = trace
        self._tracer = tracer_provider.get_tracer("ordersaga", __version__)
        self._provider = tracer_provider
        self._owned = owned
        self._propagator = TraceContextTextMapPropagator()
        self.kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "client": trace.SpanKind.CLIENT,
            "server": trace.SpanKind.SERVER,
        }

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        traceparent: str | None = None,
        parent: Any = None,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[Any]:
        """A span made current inside the block; its parent is ``traceparent`` (a received
        header) or ``parent`` (a context) when given, else the current span."""
        context = parent
        if traceparent:
            context = self._propagator.extract({TRACEPARENT: traceparent})
        with self._tracer.start_as_current_span(
            name, context=context, kind=self.kinds[kind], attributes=dict(attributes or {})
        ) as span:
            yield span

    def remote_parent(self, trace_id: int, span_id: int) -> Any:
        """A context whose parent is a span elsewhere, known by its ids (sampled)."""
        trace = self._trace
        span_context = trace.SpanContext(
            trace_id,
            span_id,
            is_remote=True,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(span_context))

    def current_span(self) -> Any:
        """The current span (a non-recording one when there is none)."""
        return self._trace.get_current_span()

    def current_traceparent(self) -> str | None:
        """The ``traceparent`` of the current span, or None when there is none."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier.get(TRACEPARENT)

    def close(self) -> None:
        """Flush and stop the provider if :func:`open_tracing` built it (not a borrowed one)."""
        if self._owned:
            self._provider.shutdown()


def inject_current(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` to ``headers`` (nothing when no span is current).

    Cheap when tracing is off: without OpenTelemetry loaded no span can be current, and with it
    loaded but no span started the current span is invalid.
    """
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        flags = int(context.trace_flags)
        headers[TRACEPARENT] = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"


def open_tracing(settings: TracingSettings, tracer_provider: Any = None) -> Tracing | None:
    """A :class:`Tracing` on ``tracer_provider``, on the process's provider, or on a new SDK
    provider (see the module doc); None when tracing is off and no provider is given."""
    if tracer_provider is None and not settings.enabled:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError("tracing needs OpenTelemetry: pip install 'ordersaga[otel]'") from None
    if tracer_provider is not None:
        return Tracing(tracer_provider)
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return Tracing(current)
    return Tracing(_sdk_provider(settings), owned=True)


def _sdk_provider(settings: TracingSettings) -> Any:
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError(
            "tracing needs the OpenTelemetry SDK: pip install 'ordersaga[otel]'"
        ) from None
    exporter: Any
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif settings.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http"
                " (pip install it), or set OTEL_TRACES_EXPORTER=console"
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={settings.exporter!r}: use otlp, console or none")
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
