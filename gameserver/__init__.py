"""gameserver: a server-authoritative multiplayer game state sync server over WSS."""

import shared  # noqa: F401  # GAMESERVER_PURE=1 applies to gameserver.limits too

__version__ = "0.1.0"
