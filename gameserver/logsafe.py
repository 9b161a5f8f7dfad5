"""Peer-chosen text in log lines, made safe to log.

A log line is one line: a CR or LF inside a value a peer chose (a player id, an admin's id, a
request line, an error message that quotes input) would let that peer start a line of its own,
and forge a log entry. :func:`peer_text` escapes such characters the way ``repr`` does, so a
value always stays inside its own line and can be read back unambiguously. Every log call that
formats a peer-chosen value passes it through here (tokens verify that player ids are
printable, too; see ``gameserver.auth.valid_player_id``).
"""

from __future__ import annotations

#: longest peer text kept in a log line (in characters, after escaping)
MAX_LOGGED_CHARS = 200


def peer_text(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """``str(value)`` with control and other non-printable characters (CR, LF, tabs, escape
    sequences, Unicode line separators) and backslashes escaped as ``repr`` escapes them, cut
    to ``limit`` characters (with a trailing ``...``)."""
    text = str(value)
    if not text.isprintable() or "\\" in text:
        text = repr(text)[1:-1]
    if len(text) > limit:
        text = text[:limit] + "..."
    return text
