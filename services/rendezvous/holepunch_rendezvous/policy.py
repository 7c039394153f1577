"""Who may be introduced to whom: the introduction policy, pure, no I/O.

Workers declare tags at registration (`holepunch_protocol.tags`); the operator writes
`INTRODUCTION_POLICY` as comma-separated rules over those tags:

    team-a            team-a reaches team-a (a group reaches itself)
    team-a->gpu       a worker tagged team-a may ask to be introduced to one tagged gpu
    team-a<->team-b   both directions
    *                 anyone reaches anyone (also `*->*`); `*` on either side of an
                      arrow is any worker, untagged ones included

A rule is read from the side that asks (connect_request's sender, the *initiator*): the
introduction is allowed when some rule's left side matches one of the initiator's tags
(or is `*`) and its right side one of the responder's tags (or is `*`). Untagged
workers match only `*`.

Which tags a worker may declare: `ALLOWED_WORKER_TAGS` (a list, or `*` for any), by
default every tag the policy names (any, when it names none). A worker declaring another
is refused at registration (`tag_not_allowed`).

Without a policy: allow everything under AUTH_MODE=none (development), refuse every
introduction under token and iam: who may reach whom is then the operator's to state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from holepunch_protocol import AuthMode, PeerEntry, Peers
from holepunch_protocol.tags import TAG_PATTERN

from holepunch_rendezvous.registry import Page, WorkerRecord

__all__ = [
    "ALLOW_ALL",
    "ANY",
    "DENY_ALL",
    "IntroductionPolicy",
    "PolicyError",
    "parse_policy",
    "peers_page",
    "policy_for",
]

ANY = "*"
MAX_RULES = 256


class PolicyError(ValueError):
    """A policy or tag list that cannot be read; the message says what to change."""


@dataclass(frozen=True, slots=True)
class IntroductionPolicy:
    """`rules`: (initiator side, responder side) pairs of a tag or `ANY`.
    `declarable`: the tags a worker may declare; None: any well-formed tag.
    `description`: the policy as the operator wrote it, or what the default is."""

    rules: frozenset[tuple[str, str]]
    declarable: frozenset[str] | None
    description: str

    def allows(self, initiator_tags: Iterable[str], responder_tags: Iterable[str]) -> bool:
        sources = {ANY, *initiator_tags}
        targets = {ANY, *responder_tags}
        return any(source in sources and target in targets for source, target in self.rules)

    def undeclarable(self, tags: Iterable[str]) -> tuple[str, ...]:
        """The tags among `tags` a worker may not declare."""
        if self.declarable is None:
            return ()
        return tuple(tag for tag in tags if tag not in self.declarable)


ALLOW_ALL = IntroductionPolicy(frozenset({(ANY, ANY)}), None, "allow all (AUTH_MODE=none)")
DENY_ALL = IntroductionPolicy(
    frozenset(), None, "no INTRODUCTION_POLICY: every introduction is refused"
)


def _side(text: str, rule: str) -> str:
    side = text.strip()
    if side != ANY and not TAG_PATTERN.fullmatch(side):
        raise PolicyError(
            f"rule {rule.strip()!r}: {side!r} is neither a tag (a-z 0-9 _ . -, up to 32) nor *"
        )
    return side


def parse_policy(text: str) -> frozenset[tuple[str, str]]:
    """The rules of a policy text (see the module docstring); PolicyError if unreadable."""
    rules: set[tuple[str, str]] = set()
    entries = [entry for entry in text.split(",") if entry.strip()]
    if not entries:
        raise PolicyError("has no rule: write e.g. 'team-a' or 'team-a->team-b' or '*'")
    if len(entries) > MAX_RULES:
        raise PolicyError(f"has {len(entries)} rules, at most {MAX_RULES}")
    for entry in entries:
        if "<->" in entry:
            left, right = (_side(part, entry) for part in entry.split("<->", 1))
            rules.update({(left, right), (right, left)})
        elif "->" in entry:
            left, right = (_side(part, entry) for part in entry.split("->", 1))
            rules.add((left, right))
        else:
            tag = _side(entry, entry)
            rules.add((tag, tag))
    return frozenset(rules)


def policy_for(
    auth_mode: AuthMode, policy_text: str | None, allowed_tags_text: str | None = None
) -> IntroductionPolicy:
    """The policy a rendezvous enforces, from its settings (PolicyError if unreadable)."""
    if policy_text is None or not policy_text.strip():
        base = ALLOW_ALL if auth_mode is AuthMode.NONE else DENY_ALL
        declarable = None if allowed_tags_text is None else _allowed_tags(allowed_tags_text)
        return IntroductionPolicy(base.rules, declarable, base.description)
    rules = parse_policy(policy_text)
    if allowed_tags_text is None:
        named = frozenset(side for rule in rules for side in rule if side != ANY)
        declarable = named or None  # a policy of `*` alone: tags change nothing
    else:
        declarable = _allowed_tags(allowed_tags_text)
    return IntroductionPolicy(rules, declarable, policy_text.strip())


def _allowed_tags(text: str) -> frozenset[str] | None:
    """ALLOWED_WORKER_TAGS: comma-separated tags, or `*` for any well-formed tag."""
    if text.strip() == ANY:
        return None
    tags = frozenset(entry.strip() for entry in text.split(",") if entry.strip())
    for tag in sorted(tags):
        if not TAG_PATTERN.fullmatch(tag):
            raise PolicyError(f"{tag[:40]!r} is not a tag (a-z 0-9 _ . -, up to 32) nor *")
    return tags


def peers_page(policy: IntroductionPolicy, asker: WorkerRecord, page: Page) -> Peers:
    """The answer to list_peers: the page's workers that `asker` may be introduced to
    (never itself), in worker_id order; the cursor follows the page, not the answer, so
    paging stays cheap and resumable however few peers the policy allows."""
    entries = tuple(
        PeerEntry(
            worker_id=record.worker_id,
            tags=record.tags,
            mapping=None if record.udp_endpoint is None else record.udp_endpoint.mapping,
        )
        for record in page.records
        if record.worker_id != asker.worker_id and policy.allows(asker.tags, record.tags)
    )
    return Peers(peers=entries, next_cursor=page.next_cursor)
