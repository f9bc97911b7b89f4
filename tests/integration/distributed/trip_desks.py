"""Serve the trip example's four desks over HTTP, one port each (a test's helper process).

    python trip_desks.py DATA_DIR FLIGHT_PORT HOTEL_PORT CAR_PORT CHARGE_PORT

Each desk is served by the participant kit's own app (:func:`ordersaga.participant.create_app`),
opened in the server's event loop. The test kills the process when it is done.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "examples"))

import trip_saga

from ordersaga.cluster.serve import run_server
from ordersaga.participant import Participant, create_app


def opener(desk: type[trip_saga.Desk], data_dir: Path) -> object:
    async def open_desk() -> Participant:
        return await trip_saga.open_desk(desk, data_dir)

    return open_desk


async def main(data_dir: Path, ports: list[int]) -> None:
    servers = [
        run_server(
            create_app(opener(desk, data_dir), name=desk.name),  # type: ignore[arg-type]
            desk.name,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
        for desk, port in zip(trip_saga.DESK_TYPES, ports, strict=True)
    ]
    await asyncio.gather(*servers)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
