"""The proto and its generated code: the committed code is what the generator makes, and every
message and method declared is the published one (as tritonclient ships it) to the field."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2 as triton_pb

from serving.grpc.generated import grpc_service_pb2 as pb
from serving.grpc.service import SERVICE, UNSUPPORTED
from tests.support.server import REPO


def _file(serialized: bytes) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(serialized)


OURS = _file(pb.DESCRIPTOR.serialized_pb)
THEIRS = _file(triton_pb.DESCRIPTOR.serialized_pb)


def _messages(
    file: descriptor_pb2.FileDescriptorProto,
) -> dict[str, descriptor_pb2.DescriptorProto]:
    """Every message, nested ones included, by full name."""
    found: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, messages: list[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            name = f"{prefix}.{message.name}"
            found[name] = message
            walk(name, list(message.nested_type))

    walk(f".{file.package}", list(file.message_type))
    return found


def _fields(message: descriptor_pb2.DescriptorProto) -> dict[int, tuple[object, ...]]:
    return {
        field.number: (field.name, field.type, field.label, field.type_name, field.oneof_index)
        for field in message.field
    }


def test_committed_code_is_what_the_generator_makes() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/grpc_code.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_package_and_service_names_are_the_published_ones() -> None:
    assert OURS.package == THEIRS.package == "inference"
    assert [service.name for service in OURS.service] == ["GRPCInferenceService"]
    assert pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name == SERVICE


@pytest.mark.parametrize("name", sorted(_messages(OURS)))
def test_every_message_matches_tritonclient_field_by_field(name: str) -> None:
    ours, theirs = _messages(OURS)[name], _messages(THEIRS).get(name)
    assert theirs is not None, f"{name} is not a message of the published API"
    assert _fields(ours) == _fields(theirs)
    assert ours.options.map_entry == theirs.options.map_entry


def test_every_method_matches_and_the_rest_is_named_unsupported() -> None:
    theirs = {method.name: method for method in THEIRS.service[0].method}
    ours = {method.name: method for method in OURS.service[0].method}
    for name, method in ours.items():
        published = theirs[name]
        assert (method.input_type, method.output_type) == (
            published.input_type,
            published.output_type,
        )
        assert (method.client_streaming, method.server_streaming) == (
            published.client_streaming,
            published.server_streaming,
        )
    # Each published method is either declared and served, or refused with a reason.
    assert set(theirs) <= set(ours) | set(UNSUPPORTED)


def test_messages_cross_the_wire_both_ways_with_tritonclient() -> None:
    request = triton_pb.ModelInferRequest(model_name="mnist", model_version="1", id="r")
    request.parameters["priority"].uint64_param = 3
    request.parameters["timeout"].int64_param = 5000
    tensor = request.inputs.add(name="pixels", datatype="UINT8", shape=[2, 784])
    request.outputs.add(name="label")
    request.raw_input_contents.append(bytes(range(256)) * 6 + bytes(32))
    ours = pb.ModelInferRequest.FromString(request.SerializeToString())
    assert ours.model_version == "1"
    assert ours.parameters["priority"].uint64_param == 3
    assert list(ours.inputs[0].shape) == list(tensor.shape)
    assert ours.raw_input_contents[0] == request.raw_input_contents[0]

    response = pb.ModelInferResponse(model_name="mnist", model_version="1")
    response.outputs.add(name="label", datatype="INT64", shape=[2])
    response.raw_output_contents.append(np.array([7, 2], "<i8").tobytes())
    back = triton_pb.ModelInferResponse.FromString(response.SerializeToString())
    assert np.frombuffer(back.raw_output_contents[0], "<i8").tolist() == [7, 2]
    assert back.SerializeToString() == response.SerializeToString()
