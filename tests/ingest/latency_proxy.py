"""A TCP proxy to a local port that delays every chunk each way (a link of some milliseconds between an
edge node and Postgres): `python -m tests.ingest.latency_proxy LISTEN_PORT TARGET_PORT DELAY_S`."""

from __future__ import annotations

import asyncio
import sys


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy `reader` to `writer`, each chunk `delay_s` after it came (order kept)."""
    chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def pump() -> None:
        while True:
            due, data = await chunks.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    pumping = asyncio.create_task(pump())
    while True:
        data = await reader.read(65536)
        await chunks.put((loop.time() + delay_s, data))
        if not data:
            break
    await pumping


async def serve(listen_port: int, target_port: int, delay_s: float) -> None:
    async def connect(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(relay(client_reader, server_writer, delay_s), relay(server_reader, client_writer, delay_s),
                             return_exceptions=True)  # fmt: skip

    server = await asyncio.start_server(connect, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
