"""An interop client nobody here wrote the stack of: Python grpcio with stubs
generated from proto/ at run time, signing with the `cryptography` package.

usage: settle.py PROTO_DIR NODE_ADDR HOSPITAL_KEY_FILE HOSPITAL_CODE MSGID [CA_CERT CERT PKCS8_KEY]
Over TLS when the CA, the hospital's certificate and its key as PKCS#8 PEM
are given (xclear tls dev writes them). Prints the node's answer as JSON.
"""
import json
import os
import sys
import tempfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_tools import protoc
import grpc

proto_dir, addr, key_file, hospital, msgid = sys.argv[1:6]
out = tempfile.mkdtemp()
rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                  os.path.join(proto_dir, "xclear/v1/xclear.proto")])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, out)
from xclear.v1 import xclear_pb2, xclear_pb2_grpc  # noqa: E402

seed = bytes.fromhex(open(key_file).read().strip())
key = Ed25519PrivateKey.from_private_bytes(seed)

req = xclear_pb2.HospitalRequest(
    fixmedins_code=hospital, msgid=msgid, action=xclear_pb2.HospitalRequest.SETTLE,
    psn_no="P0001", insuplc_admdvs="611000", setl_date="2026-03-10",
    items=[xclear_pb2.BillItem(code="XA001", qty="1", price="1500.00")])
body = req.SerializeToString()
signature = key.sign(b"xclear/hospital/v1\0" + body)
env = xclear_pb2.Signed(body=body, signature=signature, signer=hospital)

def channel(addr, tls):
    if not tls:
        return grpc.insecure_channel(addr)
    ca, cert, pem = (open(f, "rb").read() for f in tls)
    return grpc.secure_channel(addr, grpc.ssl_channel_credentials(ca, pem, cert))


with channel(addr, sys.argv[6:9]) as channel:
    stub = xclear_pb2_grpc.HospitalServiceStub(channel)
    r = stub.Submit(env, timeout=10)
print(json.dumps({"settled": r.settled, "setl_id": r.setl_id, "hifp_pay": r.figures.hifp_pay,
                  "psn_part_amt": r.figures.psn_part_amt, "refusal": r.refusal}))
