"""CLI commands, one module per command (or family of commands)."""
