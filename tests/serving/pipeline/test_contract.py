"""The contract a request is checked against, taken from the served model version."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from serving.model import LoadedModel, load_model
from serving.pipeline.contract import Contract
from serving.settings import Settings


@pytest.fixture(scope="module")
def model(tiny_model_repository: Path) -> LoadedModel:
    return load_model(Settings(model_repository=tiny_model_repository))


def test_the_contract_is_the_models_tensors_and_the_request_limit(model: LoadedModel) -> None:
    contract = Contract.of(model, max_instances=64)
    assert contract == Contract(
        model_name="mnist",
        model_version="1",
        input_name="pixels",
        output_name="probabilities",
        features=784,
        classes=10,
        max_instances=64,
        side=28,
    )


def test_a_model_whose_input_is_not_a_square_image_has_no_side(model: LoadedModel) -> None:
    flat = dataclasses.replace(model, num_features=100 * 3)
    contract = Contract.of(flat, max_instances=1)
    assert contract.features == 300
    assert contract.side is None  # no nested rows or PNG for it: only flat instances
