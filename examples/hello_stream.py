"""Two applications talk over holepunch's Python API: one serves a port in-process, the
other opens a stream to it, sends a line and prints the answer.

Each runs its own worker, configured like the `holepunch-worker` command (environment
variables: RENDEZVOUS_SERVICE_URL, WORKER_ID, STUN_SERVERS, ...; README "Configuration"):

    WORKER_ID=worker-b python examples/hello_stream.py serve
    WORKER_ID=worker-a python examples/hello_stream.py ask worker-b "hello from a"

`serve` prints `serving port 7000 as worker-b` once its worker is registered, answers each
line it is sent with `<worker_id> heard: <line>`, and runs until Ctrl-C or SIGTERM.
`ask` prints the answer and exits 0; or prints why not (the rendezvous's reason, say
`peer_not_found`) and exits 1. Nothing listens on TCP port 7000: the stream ends in
`serve`'s handler, in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from holepunch_worker import api
from holepunch_worker.dataplane.interface import DataPlaneError, IncomingStream

PORT = 7000  # a port number between the two applications, not a TCP port
MAX_LINE_BYTES = 4096
ANSWER_TIMEOUT_SEC = 10.0


async def serve() -> int:
    async with api.start() as node:

        async def answer(stream: IncomingStream) -> None:
            line = await stream.reader.readline()
            text = line.decode("utf-8", "replace").strip()[:MAX_LINE_BYTES]
            stream.writer.write(f"{node.worker_id} heard: {text}\n".encode())
            await stream.writer.drain()
            stream.writer.close()
            print(f"answered {stream.peer_id}: {text}", flush=True)

        node.serve(PORT, answer)
        print(f"serving port {PORT} as {node.worker_id}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    return 0


async def ask(peer_id: str, line: str) -> int:
    async with api.start() as node:
        try:
            reader, writer = await node.open_stream(peer_id, PORT)
            writer.write(line.encode() + b"\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_SEC)
            writer.close()
        except DataPlaneError as error:
            print(f"cannot reach {peer_id}: {error.reason} ({error.detail})", file=sys.stderr)
            return 1
        except TimeoutError:
            print(f"{peer_id} did not answer within {ANSWER_TIMEOUT_SEC:g} s", file=sys.stderr)
            return 1
    print(answer.decode("utf-8", "replace").rstrip("\n"), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help=f"answer lines sent to port {PORT}")
    asking = commands.add_parser("ask", help="send one line to a peer and print its answer")
    asking.add_argument("peer_id")
    asking.add_argument("line", nargs="?", default="hello")
    args = parser.parse_args()
    if args.command == "serve":
        return asyncio.run(serve())
    return asyncio.run(ask(args.peer_id, args.line))


if __name__ == "__main__":
    sys.exit(main())
