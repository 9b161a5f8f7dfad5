"""The gamesync wire protocol: pure code shared by the server and clients (no I/O, no trio)."""

from shared._compiled import install_pure_finder

install_pure_finder()  # GAMESERVER_PURE=1: the .py source of the mypyc-compiled modules
