"""What a request is checked against: the served model's tensors and the request limits."""

from __future__ import annotations

from dataclasses import dataclass

from serving.model import LoadedModel
from serving.pipeline.pixels import side


@dataclass(frozen=True, slots=True)
class Contract:
    """One per served model version (built when it is admitted, cached by the pipeline)."""

    model_name: str
    model_version: str
    input_name: str
    output_name: str
    #: Pixels per image (the model's input width: 784 for MNIST).
    features: int
    classes: int
    max_instances: int
    #: The side of the square image (28), for nested JSON rows and PNG input; None: not square.
    side: int | None

    @classmethod
    def of(cls, model: LoadedModel, max_instances: int) -> Contract:
        return cls(
            model_name=model.name,
            model_version=model.version,
            input_name=model.input_name,
            output_name=model.output_name,
            features=model.num_features,
            classes=model.num_classes,
            max_instances=max_instances,
            side=side(model.num_features),
        )
