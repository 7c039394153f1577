"""The fleet page (`/ui`): workers, NAT kinds and peer paths, live.

`changes` names what the page is told (a worker joined, left, moved; a session was made,
a side reported its path); `fleet` filters and pages the worker table; `paths` keeps the
picture of sessions; `feed` batches changes, shares them between instances and pushes
them to each viewer; `routes` serves the page, its assets and its JSON. Only `feed` and
`routes` do I/O.
"""

from holepunch_rendezvous.ui.feed import LiveFeed
from holepunch_rendezvous.ui.routes import UI_ROUTES

__all__ = ["UI_ROUTES", "LiveFeed"]
