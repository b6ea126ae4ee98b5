#!/usr/bin/env python3
"""Ask any live IDunno node for its membership view and print the members.

    pip install nats-py msgpack
    python3 list_members.py [nats://127.0.0.1:4222]

The URL defaults to $IDUNNO_NATS_URL, else nats://127.0.0.1:4222.
"""
import asyncio
import os
import sys

import msgpack
import nats
from nats.errors import NoRespondersError, TimeoutError

SUBJECT = "idunno.v1.members.list"
SCHEMA_VERSION = 1


async def main(url: str) -> int:
    async def quiet(e):  # one attempt per server; the error is reported below
        pass

    try:
        nc = await nats.connect(
            url, name="list_members.py", connect_timeout=2, max_reconnect_attempts=1, error_cb=quiet
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
