"""What the web side and the workers both need. Imports neither Flask nor torch."""
