"""Helpers shared by the test modules (emulator harness, SDK clients)."""
