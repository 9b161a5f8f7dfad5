"""gamebots: many bots in one process, for load tests (``gamebots --help``)."""

from clients.bots.runner import BotConfig, run_bots

__all__ = ["BotConfig", "run_bots"]
