#!/usr/bin/env python3
"""Registers and issues N alarm devices through vakt's API, as a coordinator would, and
writes them as `id key` lines (firmware-sim's --devices file).

    benches/register.py HTTP_PORT TOKEN PREFIX N OUT [--per-case K] [--risk R] [--threads T]

Device ids are PREFIX-000000, PREFIX-000001, ... Every K devices share one person and one
case (0, the default: all devices one case). T connections register in parallel, each its
own share of the devices; the lines come out in id order all the same.
"""
import argparse
import http.client
import json
import sys
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("token")
    ap.add_argument("prefix")
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--per-case", type=int, default=0)
    ap.add_argument("--risk", default="medium")
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    local = threading.local()

    def post(path, body):
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", a.port)
        local.conn.request("POST", path, json.dumps(body),
                           {"Authorization": f"Bearer {a.token}", "Content-Type": "application/json"})
        r = local.conn.getresponse()
        data = r.read()
        assert r.status < 300, (path, r.status, data)
        return json.loads(data)

    per_case = a.per_case or a.n
    cases = (a.n + per_case - 1) // per_case
    holders = [None] * cases

    def open_case(j):
        name = a.prefix.capitalize()
        person = post("/api/persons", {"name": f"{name} Test {j}", "region": "Stockholm"})
        case = post("/api/cases", {"reference": f"{a.prefix.upper()}-{j}", "person_id": person["id"],
                                   "risk": a.risk, "region": "Stockholm"})
        holders[j] = (case["id"], person["id"])

    lines = [None] * a.n

    def register(i):
        case_id, person_id = holders[i // per_case]
        d = post("/api/devices", {"id": f"{a.prefix}-{i:06d}"})
        post(f"/api/devices/{d['id']}/issue", {"case_id": case_id, "holder_person_id": person_id})
        lines[i] = f"{d['id']} {d['key']}\n"

    failed = []

    def share(work, k):
        try:
            for i in range(k, len(work), a.threads):
                if failed:
                    return
                work[i]()
        except Exception as e:  # the first failure stops every thread
            failed.append(e)

    for work in ([lambda j=j: open_case(j) for j in range(cases)],
                 [lambda i=i: register(i) for i in range(a.n)]):
        threads = [threading.Thread(target=share, args=(work, k)) for k in range(a.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failed:
            sys.exit(f"register.py: {failed[0]!r}")
    with open(a.out, "w") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
