"""A worker that proves its own key to the rendezvous but shows another in the data plane's
TLS: what a peer that got hold of a worker_id's registration, and not its key, would look
like. The NAT-lab tests run it as a process, `python -m tests.support.impostor_worker`,
with a worker's environment; everything else is the real worker.
"""

from __future__ import annotations

import sys
from typing import Any

from holepunch_worker.__main__ import main
from holepunch_worker.dataplane import link
from holepunch_worker.identity import WorkerKey

_OTHER_KEY = WorkerKey.generate()
_real_init = link.PeerLink.__init__


def _with_another_key(self: link.PeerLink, **arguments: Any) -> None:
    _real_init(self, **{**arguments, "key": _OTHER_KEY})


if __name__ == "__main__":
    link.PeerLink.__init__ = _with_another_key  # type: ignore[method-assign]
    sys.exit(main())
