"""Running departure and arrival counts per airport, printed on every hub heartbeat.

    SWIM_API_KEY=... python examples/airport_monitor.py --airport KJFK,KBOS

Without --airport every airport is counted. The heartbeat is a convenient clock: it arrives
every `heartbeat_interval` seconds even when no flight moves, so the table refreshes steadily.
"""

from __future__ import annotations

from collections import Counter

import trio
from common import deadline, parse, parser, run, split_list

from swimctl import client as swim


def table(departures: Counter[str], arrivals: Counter[str]) -> str:
    airports = sorted(set(departures) | set(arrivals))
    if not airports:
        return "(no movements yet)"
    return "  ".join(f"{a} dep {departures[a]} arr {arrivals[a]}" for a in airports)


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--airport", help="comma-separated ICAO codes to count (default: all)")
    args = parse(p)
    wanted = split_list(args.airport)
    departures: Counter[str] = Counter()
    arrivals: Counter[str] = Counter()
    seen = 0
    with trio.move_on_after(deadline(args)):
        async with swim.connect(args.url, args.key) as client:
            # The hub filters for us: with airports set, only movements touching them arrive.
            await client.subscribe(["flight.departed", "flight.arrived"], airports=wanted)
            print("subscribed")
            async for item in client:
                if not isinstance(item, swim.Event):
                    continue  # reconnects are the client's business; counts carry on
                if item.is_heartbeat:
                    print(f"{item.when:%H:%M:%S} {table(departures, arrivals)}")
                    continue
                # A departure counts for its origin, an arrival for its destination. With an
                # airport filter, a KBOS->KJFK departure also arrives for KJFK: count only
                # the airport the movement happened at, and only if it is one we watch.
                airport = item.data.get("dep" if item.type == "flight.departed" else "arr")
                if isinstance(airport, str) and (wanted is None or airport in wanted):
                    target = departures if item.type == "flight.departed" else arrivals
                    target[airport] += 1
                seen += 1
                if args.max_events and seen >= args.max_events:
                    break
    print(f"final: {table(departures, arrivals)}")


if __name__ == "__main__":
    run(main)
