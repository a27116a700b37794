"""Lists a server's services through gRPC reflection v1alpha, with Python's
grpcio-reflection (which, like grpcurl before 1.8.8, speaks only v1alpha).

usage: reflect.py ADDR [CA_CERT CERT PKCS8_KEY]
Over TLS when the CA, a client certificate and its key are given. Prints
the services as a JSON list, sorted.
"""
import json
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

def channel(addr, tls):
    if not tls:
        return grpc.insecure_channel(addr)
    ca, cert, pem = (open(f, "rb").read() for f in tls)
    return grpc.secure_channel(addr, grpc.ssl_channel_credentials(ca, pem, cert))


with channel(sys.argv[1], sys.argv[2:5]) as channel:
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    print(json.dumps(sorted(services)))
