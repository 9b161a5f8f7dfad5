"""The gamesync wire protocol: pure code shared by the server and clients (no I/O, no trio)."""
