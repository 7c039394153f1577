"""The data plane: applications' bytes between workers over the punched path.

`interface` is the contract between its parts (the QUIC links, the SOCKS5 proxy and the
forwards, the Python API); the modules beside it implement it.
"""
