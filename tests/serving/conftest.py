"""Serving fixtures: settings that serve the session's tiny real model."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.settings import Settings


@pytest.fixture
def settings(tiny_model_repository: Path) -> Settings:
    return Settings(model_repository=tiny_model_repository)
