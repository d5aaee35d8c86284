"""Helpers shared by the test suites (a tiny real model, a real server process)."""
