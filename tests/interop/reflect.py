"""Lists a server's services through gRPC reflection v1alpha, with Python's
grpcio-reflection (which, like grpcurl before 1.8.8, speaks only v1alpha).

usage: reflect.py ADDR
Prints the services as a JSON list, sorted.
"""
import json
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

with grpc.insecure_channel(sys.argv[1]) as channel:
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    print(json.dumps(sorted(services)))
