"""Small utilities shared by the entry points."""
