"""The telemetry options the long-running commands share (see the README's Telemetry section).

``--metrics-port P`` (``run``, ``worker``: the HTTP processes serve ``/metrics`` on their own
port), ``--log-format text|json`` (``serve``, ``worker``, ``up``) and ``--trace`` (tracing is
also turned on by the standard ``OTEL_*`` variables). The environment is read here, once.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import Any

from ordersaga.cli.args import UsageError, port

__all__ = ["add_telemetry_options", "telemetry_settings"]


def add_telemetry_options(
    parser: argparse.ArgumentParser, *, metrics: bool = True, log_format: bool = True
) -> None:
    if metrics:
        parser.add_argument(
            "--metrics-port",
            type=port,
            metavar="P",
            help="serve Prometheus metrics at http://127.0.0.1:P/metrics (0: any free port)",
        )
    if log_format:
        parser.add_argument(
            "--log-format",
            choices=("text", "json"),
            default="text",
            help="json: one JSON object per log line and per event (claims, steps, decisions)",
        )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="OpenTelemetry tracing (needs ordersaga[otel]; exporter from OTEL_TRACES_EXPORTER,"
        " console by default); OTEL_* variables turn it on too",
    )


def telemetry_settings(args: argparse.Namespace, service_name: str) -> Any:
    """The :class:`~ordersaga.local.telemetry.TelemetrySettings` the options ask for."""
    from ordersaga.local.telemetry import TelemetrySettings
    from ordersaga.telemetry.tracing import TracingSettings

    metrics_port = getattr(args, "metrics_port", None)
    if metrics_port:
        _check_free(metrics_port)
    tracing = TracingSettings.from_env(
        os.environ, flag=getattr(args, "trace", False), service_name=service_name
    )
    return TelemetrySettings(
        metrics_port=metrics_port,
        log_format=getattr(args, "log_format", "text"),
        tracing=tracing,
    )


def _check_free(number: int) -> None:
    """A taken port is a usage error before anything is opened (the server binds it later)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", number))
        except OSError as exc:
            raise UsageError(
                f"--metrics-port {number}: cannot listen on 127.0.0.1: {exc.strerror or exc}"
            ) from None
