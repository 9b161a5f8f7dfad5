"""gamebots: a load tester on the lean bot engine (``gamebots --help``)."""

from clients.bots.loadtest import LoadConfig, merge_reports, run_load

__all__ = ["LoadConfig", "merge_reports", "run_load"]
