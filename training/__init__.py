"""Training stage: MNIST -> Keras MLP or CNN -> evaluation -> ONNX (fp32 + int8) -> repository.

Importing this package does not import TensorFlow; only the stages that need it do, so that
`training.idx` can be used by the load generator and the tests without TensorFlow.
"""
