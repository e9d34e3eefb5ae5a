"""Tests that drive the real, pinned agent CLIs against a stub model, in a network sandbox."""
