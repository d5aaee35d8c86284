"""Code generated from ``serving/grpc/proto/grpc_service.proto`` by ``make grpc-code``; never
edited by hand (``scripts/grpc_code.py --check`` fails on any difference)."""
