"""Training stage: MNIST -> Keras MLP -> evaluation -> ONNX (fp32 + int8) -> model repository.

Importing this package does not import TensorFlow; only the stages that need it do, so that
`training.idx` can be used by the load generator and the tests without TensorFlow.
"""
