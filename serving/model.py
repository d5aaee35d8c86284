"""Where a request is computed: one onnxruntime session over one model-repository version.

Everything about the model comes from the repository contract (``model_repository``): which
version, which file per variant, its checksum, tensor names and preprocessing. The served file is
verified against ``metadata.files`` before a session is built, so a truncated copy or a
half-written deploy fails at start instead of answering garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model_repository import (
    Metadata,
    ModelRepositoryError,
    ModelVersionDir,
    load_metadata,
    resolve,
    sha256_file,
)
from model_repository.layout import VARIANT_FILES
from serving.batching.request import Outputs
from serving.settings import Settings

Array = npt.NDArray[np.float32]


class ModelLoadError(Exception):
    """The configured model cannot be served; the message says what is wrong and where."""


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified model version and its session. ``predict`` is called in the inference thread."""

    version_dir: ModelVersionDir
    metadata: Metadata
    variant: str
    model_file: Path
    sha256: str
    session: ort.InferenceSession
    input_name: str
    output_name: str
    num_features: int
    num_classes: int

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return str(self.version_dir.version)

    def predict(self, batch: Array) -> Outputs:
        """Probabilities ``(rows, classes)`` for ``batch`` ``(rows, features)`` float32, with
        each row's label and confidence (in the inference thread: off the event loop)."""
        probabilities: Array = self.session.run([self.output_name], {self.input_name: batch})[0]
        return Outputs.of(probabilities)


def locate_metadata(settings: Settings) -> Metadata:
    """The configured version's metadata (no checksum: :func:`locate` verifies the file)."""
    return _read_metadata(_resolve(settings))


def _resolve(settings: Settings) -> ModelVersionDir:
    try:
        return resolve(settings.model_repository, settings.model_name, settings.model_version)
    except ModelRepositoryError as exc:
        raise ModelLoadError(str(exc)) from None


def _read_metadata(version_dir: ModelVersionDir) -> Metadata:
    try:
        return load_metadata(version_dir.metadata_file)
    except FileNotFoundError:
        raise ModelLoadError(f"{version_dir.metadata_file} is missing") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ModelLoadError(f"{version_dir.metadata_file} is invalid: {exc}") from None


def locate(settings: Settings) -> tuple[ModelVersionDir, Metadata, Path, str]:
    """Resolve the version, read its metadata and verify the served file's checksum.

    Cheap enough (a hash of a few MB) to run as a pre-flight check in the CLI before any server
    process starts, so a bad model is one clear line on stderr instead of a lifespan traceback.
    """
    version_dir = _resolve(settings)
    metadata = _read_metadata(version_dir)
    model_file = version_dir.model_file(settings.model_variant)
    file_name = VARIANT_FILES[settings.model_variant]
    if not model_file.is_file():
        raise ModelLoadError(f"{model_file} is missing (variant {settings.model_variant!r})")
    expected = metadata.files.get(file_name)
    if expected is None:
        raise ModelLoadError(f"{version_dir.metadata_file} lists no checksum for {file_name}")
    actual = sha256_file(model_file)
    if actual != expected.sha256:
        raise ModelLoadError(
            f"{model_file} is corrupt: sha256 {actual[:12]}… does not match metadata "
            f"{expected.sha256[:12]}… (re-export or re-copy the model version)"
        )
    return version_dir, metadata, model_file, actual


def session_options(settings: Settings) -> ort.SessionOptions:
    """Few, non-spinning threads: on a small machine the batcher supplies the parallelism."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.ort_intra_op_threads
    options.inter_op_num_threads = settings.ort_inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def load_model(settings: Settings) -> LoadedModel:
    """Verify and load the configured model version; raises :class:`ModelLoadError`."""
    version_dir, metadata, model_file, digest = locate(settings)
    if not metadata.inputs or not metadata.outputs:
        raise ModelLoadError(f"{version_dir.metadata_file} declares no inputs or outputs")
    input_spec, output_spec = metadata.inputs[0], metadata.outputs[0]
    try:
        session = ort.InferenceSession(
            str(model_file), session_options(settings), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelLoadError(f"onnxruntime cannot load {model_file}: {exc}") from None
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    if input_spec.name not in input_names or output_spec.name not in output_names:
        raise ModelLoadError(
            f"{model_file} has inputs {input_names} and outputs {output_names}; metadata "
            f"declares {input_spec.name!r} -> {output_spec.name!r}"
        )
    num_features = input_spec.shape[-1]
    num_classes = output_spec.shape[-1]
    if not isinstance(num_features, int) or not isinstance(num_classes, int):
        raise ModelLoadError(f"{version_dir.metadata_file}: last tensor dimensions must be fixed")
    return LoadedModel(
        version_dir=version_dir,
        metadata=metadata,
        variant=settings.model_variant,
        model_file=model_file,
        sha256=digest,
        session=session,
        input_name=input_spec.name,
        output_name=output_spec.name,
        num_features=num_features,
        num_classes=num_classes,
    )
