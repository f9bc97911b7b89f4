"""Transports between the orchestrator and the services, and the fault injector."""
