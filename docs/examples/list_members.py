#!/usr/bin/env python3
"""Ask any live IDunno node for its membership view and print the members.

    pip install 'nats-py[nkeys]' msgpack
    python3 list_members.py [nats://127.0.0.1:4222]

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

SUBJECT = "idunno.v1.members.list"
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
            url, name="list_members.py", connect_timeout=2, max_reconnect_attempts=1, error_cb=quiet, **options
        )
    except Exception as e:
        print(f"cannot reach the NATS server at {url}: {e}", file=sys.stderr)
        return 1
    try:
        request = msgpack.packb({"schema_version": SCHEMA_VERSION, "from": "py"})
        # One node of the queue group answers. A frozen node still holds its subscription, so a
        # request that lands on it times out: ask again (another node is picked at random).
        for _ in range(3):
            try:
                reply = await nc.request(SUBJECT, request, timeout=2)
                break
            except NoRespondersError:
                print("no node answers (is the cluster up?)", file=sys.stderr)
                return 1
            except TimeoutError:
                print("no answer within 2 s; asking again", file=sys.stderr)
        else:
            return 1
        view = msgpack.unpackb(reply.data, raw=False)
        if view.get("schema_version") != SCHEMA_VERSION:
            print(f"unsupported schema_version {view.get('schema_version')}", file=sys.stderr)
            return 1
        print(f"view of {view['node']}; coordinator: {view.get('coordinator') or 'none yet'}")
        print(f"{'id':<8} {'state':<8} {'host':<10} {'generation':>14} {'inc':>4} {'last heard':>11}  dashboard")
        for m in view["members"]:
            heard = m.get("last_heard_ms")
            heard = "(self)" if m["id"] == view["node"] else ("-" if heard is None else f"{heard} ms")
            print(
                f"{m['id']:<8} {m['state']:<8} {m.get('host', ''):<10} {m['generation']:>14} {m['incarnation']:>4} "
                f"{heard:>11}  {m.get('http') or '-'}"
            )
        return 0
    finally:
        await nc.close()


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("IDUNNO_NATS_URL", "nats://127.0.0.1:4222")
    sys.exit(asyncio.run(main(url)))
