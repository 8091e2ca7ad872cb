"""Print flight lifecycle events as they happen.

    SWIM_API_KEY=... python examples/basic.py --url ws://127.0.0.1:8090/api/swim/v1/ws \
        --airport KJFK

The smallest useful client: connect, subscribe, iterate. Reconnects and resume are handled
by `swimctl.client`; we only print what it tells us about them.
"""

from __future__ import annotations

import trio
from common import deadline, parse, parser, run, split_list

from swimctl import client as swim

LIFECYCLE = ["flight.created", "flight.updated", "flight.departed", "flight.arrived",
             "flight.deleted"]


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--airport", help="comma-separated ICAO codes (dep or arr)")
    args = parse(p)
    seen = 0
    with trio.move_on_after(deadline(args)):
        async with swim.connect(args.url, args.key) as client:
            await client.subscribe(LIFECYCLE, airports=split_list(args.airport))
            print("subscribed to", ", ".join(LIFECYCLE))
            async for item in client:
                match item:
                    case swim.Event(is_heartbeat=True):
                        continue  # liveness only; the client watches it for us
                    case swim.Event():
                        d = item.data
                        route = f"{d.get('dep') or '????'} -> {d.get('arr') or '????'}"
                        print(f"{item.seq:>8} {item.type:<16} {item.callsign or '?':<9} {route}")
                        seen += 1
                        if args.max_events and seen >= args.max_events:
                            break
                    case swim.StateChange():
                        # Connection state (connecting, connected, disconnected + retry).
                        print(f"-- {item.state}: {item.reason or ''}")
                    case swim.Resumed(recovered=False):
                        print(f"-- missed events after a reconnect: {item.reason}")
                    case swim.HubError():
                        print(f"-- hub error {item.code}: {item.message}")
    print(f"done: {seen} events")


if __name__ == "__main__":
    run(main)
