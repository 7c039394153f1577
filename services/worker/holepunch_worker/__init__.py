"""holepunch worker: publishes the public UDP endpoint of its one socket to the rendezvous.

Pure modules (no I/O): `config`, `mapping`, `backoff`, `signalling`.
I/O layers: `udp` (the socket, demultiplexed), `stun_client`, `http_status`,
`public_ip`, and `worker`, which runs them together in one event loop.
"""

__all__: list[str] = []
