"""quanttui: a terminal monitor for mean-reversion trading of a pair of Binance USD-M futures."""

__version__ = "0.1.0"
