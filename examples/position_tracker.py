"""Keep the latest position of each flight matching a callsign prefix or a bounding box.

    SWIM_API_KEY=... python examples/position_tracker.py --callsign-prefix DAL,AAL
    SWIM_API_KEY=... python examples/position_tracker.py --bbox 45,35,-70,-80   # N,S,E,W

The hub slices every `flight.positions` batch down to the positions our filters accept, so
even a whole-network feed costs us only the flights we asked for. Flights that disconnect
(`flight.deleted`) are dropped from the table.
"""

from __future__ import annotations

import trio
from common import deadline, parse, parser, run, split_list

from swimctl import client as swim
from swimctl.core.model import Position


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    north, south, east, west = (float(v) for v in text.split(","))
    return north, south, east, west


def show(flights: dict[str, Position]) -> None:
    print(f"tracking {len(flights)}: " + ", ".join(
        f"{p.callsign}@{p.latitude:.2f},{p.longitude:.2f}/{p.altitude_ft}ft"
        for p in sorted(flights.values(), key=lambda p: p.callsign)))


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--callsign-prefix", help="comma-separated callsign prefixes")
    p.add_argument("--bbox", help="N,S,E,W in degrees (W > E crosses the antimeridian)")
    args = parse(p)
    if not args.callsign_prefix and not args.bbox:
        p.error("give --callsign-prefix and/or --bbox (tracking every flight is a lot)")
    bbox = parse_bbox(args.bbox) if args.bbox else None
    # Keyed by callsign for display; flight_uid would be safer against a reused callsign.
    flights: dict[str, Position] = {}
    seen = 0
    with trio.move_on_after(deadline(args)):
        async with swim.connect(args.url, args.key) as client:
            # snapshot=True: start from every current flight instead of waiting a feed cycle.
            await client.subscribe(["flight.positions", "flight.deleted"],
                                   callsign_prefix=split_list(args.callsign_prefix),
                                   bbox=bbox, snapshot=True)
            print("subscribed")
            async for item in client:
                if not isinstance(item, swim.Event) or item.is_heartbeat:
                    continue
                if item.type == "flight.positions":
                    if item.is_snapshot:
                        flights.clear()  # a snapshot is the whole state: start over
                    # A batch holds only flights that matched, so one that left the box is
                    # simply absent: keep only this batch's flights.
                    batch = {pos.callsign: pos for pos in item.positions}
                    for gone in sorted(set(flights) - set(batch)):
                        print(f"left the area: {gone}")
                    flights = batch
                    show(flights)
                elif item.type == "flight.deleted" and item.callsign in flights:
                    # bbox does not filter deletions (they carry no position): check ours.
                    del flights[item.callsign]
                    print(f"removed {item.callsign} (disconnected)")
                    show(flights)
                if item.seq is not None:  # snapshot frames are state, not stream events
                    seen += 1
                    if args.max_events and seen >= args.max_events:
                        break
    print("final: ", end="")
    show(flights)


if __name__ == "__main__":
    run(main)
