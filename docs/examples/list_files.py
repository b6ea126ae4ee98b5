#!/usr/bin/env python3
"""List every SDFS file with its newest version, size and replicas.

    pip install 'nats-py[nkeys]' msgpack
    python3 list_files.py [nats://127.0.0.1:4222]

The URL defaults to $IDUNNO_NATS_URL, else nats://127.0.0.1:4222. For a secure cluster, set
$IDUNNO_NATS_IDENTITY to an identity directory (e.g. .idunno/secure/identities/viewer).
"""
import asyncio
import json
import os
import ssl
import sys

import msgpack
import nats
from nats.errors import NoRespondersError, TimeoutError

SUBJECT = "idunno.v1.sdfs.rpc.ls"  # the operation is the subject's last token
SCHEMA_VERSION = 1
TIMEOUT = 5  # seconds, as the CLI: the answering node reads one metadata entry per file


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


async def main(url: str) -> int:
    async def quiet(e):  # one attempt per server; the error is reported below
        pass

    try:
        options = identity()
    except (OSError, KeyError, ValueError) as e:
        print(f"cannot use the identity in $IDUNNO_NATS_IDENTITY: {e}", file=sys.stderr)
        return 1
    try:
        nc = await nats.connect(
            url, name="list_files.py", connect_timeout=2, max_reconnect_attempts=1, error_cb=quiet, **options
        )
    except Exception as e:
        print(f"cannot reach the NATS server at {url}: {e}", file=sys.stderr)
        return 1
    try:
        # "ls" with an empty name lists every file ("datasets/" would list that directory only).
        request = msgpack.packb({"schema_version": SCHEMA_VERSION, "op": "ls", "name": ""})
        # One node of the queue group answers. A frozen node still holds its subscription, so a
        # request that lands on it times out: ask again (another node is picked at random).
        for _ in range(3):
            try:
                msg = await nc.request(SUBJECT, request, timeout=TIMEOUT)
                break
            except NoRespondersError:
                print("no node serves SDFS (is the cluster up?)", file=sys.stderr)
                return 1
            except TimeoutError:
                print(f"no answer within {TIMEOUT} s; asking again", file=sys.stderr)
        else:
            return 1
        reply = msgpack.unpackb(msg.data, raw=False)
        if not isinstance(reply, dict) or reply.get("schema_version") != SCHEMA_VERSION:
            version = reply.get("schema_version") if isinstance(reply, dict) else None
            print(f"unsupported schema_version {version}", file=sys.stderr)
            return 1
        if reply.get("reply") == "error":
            print(f"refused ({reply['kind']}): {reply['message']}", file=sys.stderr)
            return 1
        if reply.get("reply") != "listing":
            print(f"unexpected reply {reply.get('reply')!r}", file=sys.stderr)
            return 1
        files = [f for f in reply["files"] if f["versions"]]
        width = max([len("name")] + [len(f["name"]) for f in files])
        print(f"{'name':<{width}} {'version':>7} {'size':>12}  replicas")
        for f in files:
            newest = f["versions"][-1]  # versions are oldest first
            replicas = ", ".join(newest["replicas"]) or "-"
            print(f"{f['name']:<{width}} {newest['version']:>7} {newest['size']:>12}  {replicas}")
        print(f"{len(files)} file(s)")
        return 0
    finally:
        await nc.close()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("IDUNNO_NATS_URL", "nats://127.0.0.1:4222")
    sys.exit(asyncio.run(main(url)))
