"""Turning runs into reports: plots, notebook helpers and the papermill runner."""
