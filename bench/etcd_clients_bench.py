#!/usr/bin/env python3
"""cluster-ipam's path to etcd: ``requests`` + ``etcd3gw``, ``http.client``, ours and gRPC (issue 19).

One ADD's etcd work (a linearizable read of the attachment key, then a
guarded two-key transaction) from Python clients on a 3-member cluster on
127.0.0.1 of a private namespace (``cnicore``: cluster-ipam's own transport,
``cluster_ipam/transport.py``): cold (a fresh ``python -I``: import + one
ADD's work, median of 8 execs) and warm (one client, 300 in a row; 16
processes, 150 each). gRPC uses stubs generated at run time (``grpcio-tools``,
the test extras) from ``bench/etcd_subset.proto``, etcd's own messages for
Range and Txn; it is skipped when grpcio is not installed. Prints JSON. Run as root from the repo:
``sudo .venv/bin/python bench/etcd_clients_bench.py``. The numbers and the
choice are in docs/CLUSTER_IPAM.md ("The path to etcd").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

#: One client process: ``mode url count tag``; prints its import time and per-ADD latencies.
WORKER = r'''
import base64, json, sys, time
mode, url, n, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.perf_counter()
host, port = url.split("//")[1].split(":")
if mode == "requests":
    import requests
    from etcd3gw.client import Etcd3Client
    session = requests.Session()
    session.trust_env = False
    client = Etcd3Client(host=host, port=int(port), api_path="/v3/", session=session)
    def post(path, body):
        return client.session.post(client.get_url(path), json=body, timeout=2).json()
elif mode == "grpc":
    sys.path.insert(0, sys.argv[5])
    import grpc
    import etcd_subset_pb2 as pb
    import etcd_subset_pb2_grpc as pb_grpc
    stub = pb_grpc.KVStub(grpc.insecure_channel(f"{host}:{port}"))
    def post(path, body):
        if path == "kv/range":
            return stub.Range(pb.RangeRequest(key=base64.b64decode(body["key"])), timeout=2)
        compare = [pb.Compare(key=base64.b64decode(c["key"]), target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                              create_revision=0) for c in body["compare"]]
        success = [pb.RequestOp(request_put=pb.PutRequest(key=base64.b64decode(op["request_put"]["key"]),
                                                          value=base64.b64decode(op["request_put"]["value"])))
                   for op in body["success"]]
        return stub.Txn(pb.TxnRequest(compare=compare, success=success), timeout=2)
elif mode == "cnicore":
    from cni_plugins_builtin.cluster_ipam.transport import Connection
    ours = Connection("http", host, int(port), None)
    def post(path, body):
        return ours.post("/v3/" + path, body, 2, 2).json
else:
    import http.client
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    def post(path, body):
        conn.request("POST", "/v3/" + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())
imported = time.perf_counter() - t0
def b(text):
    return base64.b64encode(text.encode()).decode()
latencies = []
for i in range(n):
    start = time.perf_counter()
    akey, ipkey = f"/bench/{tag}/attach/{i}", f"/bench/{tag}/ips/{i:08x}"
    post("kv/range", {"key": b(akey)})
    absent = [{"key": b(k), "target": "CREATE", "result": "EQUAL", "create_revision": 0} for k in (akey, ipkey)]
    puts = [{"request_put": {"key": b(k), "value": b("x")}} for k in (ipkey, akey)]
    post("kv/txn", {"compare": absent, "success": puts, "failure": []})
    latencies.append(time.perf_counter() - start)
print(json.dumps({"import": imported, "lat": latencies}))
'''


def measure(cluster, script: str, mode: str) -> dict[str, float]:
    url, py = cluster.endpoints[0], sys.executable

    def argv(count: int) -> list[str]:
        return [py, "-I", script, mode, url, str(count), uuid.uuid4().hex[:12], os.path.dirname(script)]

    cold = []
    for _ in range(8):
        start = time.perf_counter()
        proc = cluster.run(lambda: subprocess.run(argv(1), capture_output=True, text=True, check=True))
        cold.append((time.perf_counter() - start, json.loads(proc.stdout)["import"]))
    cold.sort()
    one = cluster.run(lambda: subprocess.run(argv(300), capture_output=True, text=True, check=True))
    single = sorted(json.loads(one.stdout)["lat"])
    procs = [cluster.run(lambda: subprocess.Popen(argv(150), stdout=subprocess.PIPE, text=True)) for _ in range(16)]
    results = [json.loads(proc.communicate()[0]) for proc in procs]
    lats = sorted(x for r in results for x in r["lat"])
    busiest = max(sum(r["lat"]) for r in results)
    return {"cold_exec_median_s": round(cold[4][0], 3), "cold_import_median_s": round(cold[4][1], 3),
            "warm1_p50_ms": round(single[len(single) // 2] * 1000, 2),
            "warm16_per_s": round(len(lats) / busiest, 1),
            "warm16_p50_ms": round(lats[len(lats) // 2] * 1000, 2),
            "warm16_p99_ms": round(lats[int(len(lats) * 0.99)] * 1000, 2)}


def generate_grpc_stubs(directory: str) -> bool:
    """``etcd_subset_pb2*.py`` in ``directory``; False without grpcio-tools."""
    try:
        from grpc_tools import protoc
    except ImportError:
        return False
    here = os.path.dirname(os.path.abspath(__file__))
    return protoc.main(["protoc", f"-I{here}", f"--python_out={directory}", f"--grpc_python_out={directory}",
                        os.path.join(here, "etcd_subset.proto")]) == 0


def main() -> None:
    from cni_plugins_builtin.cluster_ipam.localcluster import LocalCluster
    from cnicore.ns import new_netns

    netns = new_netns(f"cnibench-etcdc-{uuid.uuid4().hex[:8]}")
    base = tempfile.mkdtemp(prefix="etcd-clients-")
    try:
        cluster = LocalCluster(base, netns=netns)
        try:
            cluster.start()
            script = os.path.join(base, "worker.py")
            with open(script, "w") as fh:
                fh.write(WORKER)
            modes = ["requests", "http.client", "cnicore"]
            if generate_grpc_stubs(base):
                modes.append("grpc")
            print(json.dumps({mode: measure(cluster, script, mode) for mode in modes}, indent=1))
        finally:
            cluster.stop()
    finally:
        netns.remove()


if __name__ == "__main__":
    main()
