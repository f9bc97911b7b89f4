"""ordersaga: a saga orchestrator for order processing across three services."""

__version__ = "0.1.0"
