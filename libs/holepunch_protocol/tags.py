"""Worker tags: the groups a worker declares at registration, for the introduction policy.

A worker sends its tags as the query parameter `tags` of `/ws/register/{worker_id}`
(`?tags=team-a,gpu`); a worker of the original design sends none and is untagged. Both
sides parse them here, so a tag the worker accepts is one the rendezvous accepts.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TAGS", "TAGS_QUERY_PARAMETER", "TAG_PATTERN", "format_tags", "parse_tags"]

TAGS_QUERY_PARAMETER = "tags"
# Lowercase so that "Team-A" and "team-a" cannot be two groups; short enough for a log line.
TAG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
MAX_TAGS = 16


def parse_tags(text: str | None) -> tuple[str, ...]:
    """Comma-separated tags as a sorted tuple without repeats; blank means untagged.
    Raises ValueError naming the first bad tag."""
    if text is None:
        return ()
    tags = {entry.strip() for entry in text.split(",") if entry.strip()}
    for tag in sorted(tags):
        if not TAG_PATTERN.fullmatch(tag):
            raise ValueError(
                f"tag {tag[:40]!r} is not 1-32 of a-z 0-9 _ . - (starting with a letter or digit)"
            )
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    return tuple(sorted(tags))


def format_tags(tags: tuple[str, ...]) -> str:
    """The query parameter's value for `tags` (parse_tags' inverse)."""
    return ",".join(tags)
