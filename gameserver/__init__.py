"""gameserver: a server-authoritative multiplayer game state sync server over WSS."""

__version__ = "0.1.0"
