#!/usr/bin/env python3
"""Writes the seed corpus of the `device_message` fuzz target: valid messages of every
uplink topic, signed with the target's fixed key (32 bytes of 0x0f, the worked example of
docs/protocol.md). Each file is the topic, one line feed, then the payload.

An implementation of the signature independent of the Rust code:
mac = hex(HMAC-SHA256(key, topic + "\n" + canonical(body))).

    python3 fuzz/make_seeds.py   # rewrites fuzz/corpus/device_message/seed-*
"""
import hashlib
import hmac
import json
import pathlib

KEY = bytes([0x0F] * 32)
OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "device_message"


def canonical(members):
    # Sorted keys (code point order is UTF-8 byte order), no white space, minimal escapes.
    return json.dumps(dict(sorted(members.items())), separators=(",", ":"), ensure_ascii=False)


def signed(topic, members):
    text = canonical(members)
    mac = hmac.new(KEY, (topic + "\n" + text).encode(), hashlib.sha256).hexdigest()
    return text[:-1] + ("," if len(text) > 2 else "") + '"mac":"' + mac + '"}'


def main():
    t = 1764320000123
    seeds = {
        "hello": ("dev-001", "hello", {"fw": "2.4.1", "hb": 60, "model": "VA-200", "boot": 3, "seq": 0, "ts": t}),
        "hello-escapes": ("VA_200-xyz", "hello", {"fw": "2.4.1-r\u00e5\"\\/\U0001f6a8", "hb": 86400, "model": "VA-200 \u2028", "boot": 0, "seq": 4294967295, "ts": -1}),
        "hb": ("dev-001", "hb", {"batt": 87, "boot": 3, "chg": 0, "rssi": -71, "seq": 1204, "ts": t}),
        "hb-charging": ("dev-001", "hb", {"batt": 100, "boot": 4294967295, "chg": 1, "rssi": -200, "seq": 1, "ts": 0}),
        "alarm-panic": ("dev-001", "alarm", {"acc": 12, "batt": 81, "boot": 3, "kind": "panic", "lat": 593293000, "lon": 180686000, "seq": 17, "ts": t}),
        "alarm-fall-nofix": ("dev-001", "alarm", {"boot": 3, "kind": "fall", "seq": 18, "ts": t}),
        "alarm-tamper": ("dev-002", "alarm", {"batt": 5, "boot": 1, "kind": "tamper", "lat": -900000000, "lon": 1800000000, "seq": 2, "ts": t}),
        "alarm-low-battery": ("dev-002", "alarm", {"batt": 0, "boot": 1, "kind": "low_battery", "seq": 3, "ts": t}),
        "alarm-power-loss": ("dev-002", "alarm", {"boot": 1, "kind": "power_loss", "seq": 4, "ts": t}),
        "alarm-cancel": ("dev-001", "alarm", {"boot": 3, "kind": "cancel", "seq": 19, "ts": t}),
        "alarm-test": ("dev-001", "alarm", {"boot": 3, "kind": "test", "seq": 20, "ts": t}),
        "pos": ("dev-003", "pos", {"acc": 8, "boot": 9, "lat": 593121000, "lon": 180739000, "seq": 4411, "spd": 140, "ts": t}),
        "pos-nospeed": ("dev-003", "pos", {"acc": 0, "boot": 9, "lat": 0, "lon": -1800000000, "seq": 4412, "ts": t}),
        "state": ("dev-001", "state", {"boot": 3, "online": False, "ts": t}),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (device, leaf, members) in seeds.items():
        topic = f"vakt/v1/dev/{device}/{leaf}"
        (OUT / f"seed-{name}").write_bytes((topic + "\n" + signed(topic, members)).encode())
    # The docs' hello, members not sorted and spaced: the canonical form still verifies.
    topic = "vakt/v1/dev/dev-001/hello"
    members = {"fw": "2.4.1", "hb": 60, "model": "VA-200", "boot": 3, "seq": 0, "ts": t}
    mac = json.loads(signed(topic, members))["mac"]
    unsorted = '{ "fw": "2.4.1", "hb": 60, "model": "VA-200", "boot": 3, "seq": 0, "ts": %d, "mac": "%s" }' % (t, mac)
    (OUT / "seed-hello-unsorted").write_bytes((topic + "\n" + unsorted).encode())


if __name__ == "__main__":
    main()
