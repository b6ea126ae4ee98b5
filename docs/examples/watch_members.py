#!/usr/bin/env python3
"""Print every IDunno membership event (join / alive / suspect / fail / leave).

    pip install 'nats-py[nkeys]' msgpack
    python3 watch_members.py [nats://127.0.0.1:4222]

The URL defaults to $IDUNNO_NATS_URL, else nats://127.0.0.1:4222. For a secure cluster, set
$IDUNNO_NATS_IDENTITY to an identity directory (e.g. .idunno/secure/identities/viewer).
Stop with Ctrl-C.
"""
import asyncio
import datetime
import json
import os
import signal
import ssl
import sys

import msgpack
import nats

SUBJECT = "idunno.v1.members.events"
SCHEMA_VERSION = 1


def identity() -> dict:
    """nats-py options for the identity directory in $IDUNNO_NATS_IDENTITY (a secure cluster,
    made by `idunno secure init`): its NKEY seed, TLS client certificate, CA and reply inbox
    prefix. Empty without it."""
    ident = os.environ.get("IDUNNO_NATS_IDENTITY")
    if not ident:
        return {}
    tls = ssl.create_default_context(cafile=os.path.join(ident, "ca.pem"))
    tls.load_cert_chain(os.path.join(ident, "cert.pem"), os.path.join(ident, "key.pem"))
    with open(os.path.join(ident, "identity.json")) as f:
        inbox_prefix = json.load(f)["inbox_prefix"]  # e.g. "_INBOX.viewer"
    return {"nkeys_seed": os.path.join(ident, "seed.nk"), "tls": tls, "inbox_prefix": inbox_prefix.encode()}


async def main(url: str) -> None:
    async def on_error(e):  # e.g. the server went away; nats-py reconnects by itself
        print(f"bus: {e!r}", file=sys.stderr)

    nc = await nats.connect(url, name="watch_members.py", error_cb=on_error, **identity())

    async def on_event(msg):
        try:
            ev = msgpack.unpackb(msg.data, raw=False)
        except Exception as e:  # not MessagePack at all: skip it, as the nodes do
            print(f"skipped a malformed payload: {e}", file=sys.stderr)
            return
        if not isinstance(ev, dict) or ev.get("schema_version") != SCHEMA_VERSION:
            print("skipped a payload of an unknown schema version", file=sys.stderr)
            return
        at = datetime.datetime.fromtimestamp(ev["at_ms"] / 1000).strftime("%H:%M:%S.%f")[:-3]
        print(
            f"{at} {ev['kind']:<7} node={ev['node']} generation={ev['generation']} "
            f"incarnation={ev['incarnation']} host={ev.get('host', '')} "
            f"http={ev.get('http')} reported by {ev['reporter']}",
            flush=True,
        )

    await nc.subscribe(SUBJECT, cb=on_event)
    print(f"watching {SUBJECT} on {url} (Ctrl-C to stop)", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await nc.drain()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("IDUNNO_NATS_URL", "nats://127.0.0.1:4222")
    asyncio.run(main(url))
