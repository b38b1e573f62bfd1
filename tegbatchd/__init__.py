"""tegbatchd: laptop-safe Anthropic Message Batches for TEG golf commentary."""

__version__ = "0.1.0"
