"""A worker started with a wrong service URL claims nothing (issue 9): its health check finds the
service unreachable, so the sagas stay in the pool for the workers that reach every service, and
no order fails because of it."""

from __future__ import annotations

import time

from tests.integration.http.conftest import free_port

from .conftest import Topology, Worker, order


def test_a_worker_with_a_wrong_service_url_claims_nothing(topology: Topology) -> None:
    services = {name: process.url for name, process in topology.services.items()}
    services["payment"] = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    wrong = ",".join(f"{name}={url}" for name, url in services.items())
    bad = Worker("wrong-url", topology.store, wrong, topology.root, seed=7).start()
    try:
        bad.wait_ready()
        deadline = time.monotonic() + 30
        while "not claiming: the payment service" not in bad.log():
            assert time.monotonic() < deadline, bad.log()
            time.sleep(0.05)
        stream = "".join(order(f"wu{i}", 456, "A") + "\n" for i in range(40))
        code, out, err = topology.submit(stream, "--json")
        assert code == 0, err
        assert out.count('"status": "confirmed"') == 40, out
        assert bad.stats()["worker"]["claimed"] == 0, bad.log()
    finally:
        bad.kill()
    topology.audit()
