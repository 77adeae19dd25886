"""The torch backend (backend.py) and the book's cells in its idiom."""
