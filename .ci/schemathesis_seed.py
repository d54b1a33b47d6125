#!/usr/bin/env python3
"""Seeds a running vakt for .ci/schemathesis.sh and writes the schemathesis.toml that
points the generated requests at what was seeded.

Usage: schemathesis_seed.py BASE_URL TOKEN MQTT_PORT FIRMWARE_SIM OUT_TOML

Through the API (as the admin of the bearer token): two persons, three cases (one only
for `close`), an order with a home zone and one with an ankle tag, alarm devices in stock
and issued (one only for `return`), and a tag. Then `firmware-sim` raises a real alarm on
the embedded broker, so that an alert exists. The toml binds each `{id}` and the id
members of request bodies to those objects most of the time, leaving the rest to
schemathesis's own values, so that both existing and missing objects are tried.
Standard library only.
"""
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request


def main():
    base, token, mqtt_port, sim, out = sys.argv[1:6]

    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            sys.exit(f"seeding: {method} {path} {json.dumps(body)} gave {e.code}: {e.read().decode()}")

    home = {"text": "Drottninggatan 71, Stockholm", "lat": 59.3366, "lon": 18.0612}
    anna = call("POST", "/api/persons", {
        "name": "Anna Lindqvist", "phone": "+46 70 123 45 67", "address": home,
        "protected_identity": True, "region": "Stockholm"})
    bo = call("POST", "/api/persons", {"name": "Bo Ek", "region": "Stockholm"})
    persons = [anna["id"], bo["id"]]

    def case(ref, person):
        return call("POST", "/api/cases", {
            "reference": ref, "person_id": person, "risk": "high", "region": "Stockholm",
            "response_plan": "Send a patrol at once.",
            "relatives": [{"name": "Karin", "relation": "sister", "phone": "+46 70 000 00 00"}]})["id"]

    cases = [case("2026-0001", anna["id"]), case("2026-0002", bo["id"])]
    closable = case("2026-0003", bo["id"])

    tag = call("POST", "/api/devices", {"id": "tag-0001", "kind": "tag", "model": "T9"})["id"]
    zone = {"name": "Home", "geometry": {"type": "Point", "coordinates": [home["lon"], home["lat"]]},
            "radius_m": 300}
    orders = [
        call("POST", f"/api/cases/{cases[0]}/orders", {
            "kind": "contact_ban", "restrained": {"name": "Mikael Berg", "description": "185 cm"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
            "zones": [zone]})["id"],
        call("POST", f"/api/cases/{cases[0]}/orders", {
            "kind": "special_extended", "restrained": {"name": "Mikael Berg", "vehicle": "ABC 123"},
            "valid_from": "2026-01-01T00:00:00Z", "valid_to": "2099-01-01T00:00:00Z",
            "zones": [{"name": "Work", "geometry": {"type": "Polygon", "coordinates": [[
                [18.05, 59.33], [18.07, 59.33], [18.07, 59.34], [18.05, 59.34], [18.05, 59.33]]]}}],
            "tag_device_id": tag})["id"],
    ]

    def device(dev_id, issue_to=None):
        made = call("POST", "/api/devices", {"id": dev_id, "kind": "alarm", "model": "VA-200",
                                             "hb_interval_s": 60})
        if issue_to:
            call("POST", f"/api/devices/{dev_id}/issue",
                 {"case_id": issue_to[0], "holder_person_id": issue_to[1]})
        return made["key"]

    key = device("dev-0001", (cases[0], anna["id"]))
    device("dev-0002")
    device("dev-0003", (cases[1], bo["id"]))
    device("dev-return", (cases[1], bo["id"]))
    devices = ["dev-0001", "dev-0002", "dev-0003", tag]

    # A real alarm through the embedded broker, so that alert paths exist.
    subprocess.run([sim, "alarm", "--port", mqtt_port, "--id", "dev-0001", "--key", key,
                    "--boot", "1", "--lat", "59.3370", "--lon", "18.0612", "--batt", "80"],
                   check=True, stdout=subprocess.DEVNULL)
    alerts = []
    for _ in range(100):
        alerts = [a["id"] for a in call("GET", "/api/alerts?state=open,acknowledged,resolved")]
        if alerts:
            break
        time.sleep(0.1)
    if not alerts:
        sys.exit("seeding: the alarm from firmware-sim raised no alert")

    seeded = {"persons": persons, "cases": cases, "close": [closable], "orders": orders,
              "devices": devices, "return": ["dev-return"], "tags": [tag], "alerts": alerts}
    print("seeded: " + json.dumps(seeded))

    def strings(values):
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    def ints(values):
        return "[" + ", ".join(str(int(v)) for v in values) + "]"

    toml = ["# Written by .ci/schemathesis_seed.py for one run.", ""]
    for name, values in seeded.items():
        toml += [f"[dictionaries.{name}]",
                 f"values = {ints(values) if name == 'alerts' else strings(values)}", ""]

    def bind(path_regex, params, probability=0.8):
        toml.append("[[operations]]")
        toml.append(f"include-path-regex = {json.dumps(path_regex)}")
        inner = ", ".join(
            f"{json.dumps(k)} = {{ dictionary = {json.dumps(v)}, probability = {probability} }}"
            for k, v in params.items())
        toml.append(f"parameters = {{ {inner} }}")
        toml.append("")

    bind(r"^/api/persons/\{id\}$", {"path.id": "persons"})
    bind(r"^/api/cases$", {"body.person_id": "persons"})
    bind(r"^/api/cases/\{id\}(/orders)?$", {"path.id": "cases", "body.tag_device_id": "tags"})
    bind(r"^/api/cases/\{id\}/close$", {"path.id": "close"})
    bind(r"^/api/orders/\{id\}$", {"path.id": "orders", "body.tag_device_id": "tags"})
    bind(r"^/api/devices/\{id\}(/issue)?$",
         {"path.id": "devices", "body.case_id": "cases", "body.holder_person_id": "persons"})
    bind(r"^/api/devices/\{id\}/return$", {"path.id": "return"})
    bind(r"^/api/alerts/\{id\}", {"path.id": "alerts"})
    bind(r"^/api/audit$", {"query.case_id": "cases"}, probability=0.5)
    with open(out, "w") as f:
        f.write("\n".join(toml))


if __name__ == "__main__":
    main()
