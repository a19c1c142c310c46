"""The Flask dashboard (never imports torch)."""
