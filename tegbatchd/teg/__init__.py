"""The TEG domain: scores table → facts → prompts → request specs, and local assembly of combined files.

Nothing here knows about HTTP, SQLite or the Anthropic SDK.
"""
