"""Foundations every layer uses: atomic writes, class labels, run provenance."""
