"""Coverage-guided fuzzing (atheris/libFuzzer) of the wire decoders and datagram codec.

Run: `.venv/bin/python tests/fuzz/atheris_protocol.py -runs=20000` (test_atheris.py does,
when atheris is installed). Any exception other than ProtocolError is a crash.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from holepunch_protocol import (
        ProtocolError,
        decode_client_message,
        decode_server_message,
        open_peer_datagram,
        pong_for,
    )

SECRET = bytes(range(32))


def one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="surrogateescape")
    for frame in (data, text):
        for decode in (decode_client_message, decode_server_message):
            with contextlib.suppress(ProtocolError):
                decode(frame)
    open_peer_datagram(SECRET, data)
    pong_for(data)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
