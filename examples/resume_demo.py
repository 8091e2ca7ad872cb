"""Show that a dropped connection loses nothing: drop it mid-stream, resume, count the gaps.

    SWIM_API_KEY=... python examples/resume_demo.py --drop-after 20 --gap 3 --duration 10

A "witness" connection stays up the whole time and records every seq it sees. The main
connection takes `--drop-after` events, remembers where it was (epoch, last seq) and goes
away for `--gap` seconds while the stream carries on, the way a crashed or restarted process
would. It then reconnects with `resume_from=(epoch, seq)`: the hub replays what it still holds
and the stream continues. At the end, every seq the witness saw in that window must have been
seen by the main connection too: "missed 0 events".

Both connections use the same subscription, so they are offered the same events.
"""

from __future__ import annotations

import trio
from common import parse, parser

from swimctl import client as swim


async def watch(client: swim.SwimClient, seqs: set[int]) -> None:
    """Collect the seq of every stream event (heartbeats and snapshots have none)."""
    async for item in client:
        if isinstance(item, swim.Event) and item.seq is not None:
            seqs.add(item.seq)


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--channels", default="flight.*,tmi.*", help="comma-separated patterns")
    p.add_argument("--drop-after", type=int, default=20, help="events before the drop")
    p.add_argument("--gap", type=float, default=3.0, help="seconds to stay away")
    args = parse(p)
    channels = args.channels.split(",")
    duration = args.duration if args.duration > 0 else 10.0
    witnessed: set[int] = set()
    seen: set[int] = set()
    async with swim.connect(args.url, args.key) as witness, trio.open_nursery() as nursery:
        await witness.subscribe(channels)
        nursery.start_soon(watch, witness, witnessed)

        # Phase 1: take some events, then go away.
        async with swim.connect(args.url, args.key) as first:
            await first.subscribe(channels)
            print("connected; waiting for events")
            async for item in first:
                if isinstance(item, swim.Event) and item.seq is not None:
                    seen.add(item.seq)
                    if len(seen) >= args.drop_after:
                        break
            # `last_seq` is the resume position: everything up to it was delivered to us.
            assert first.epoch is not None and first.last_seq is not None
            position = (first.epoch, first.last_seq)
        start = min(seen)
        print(f"dropped the connection after {len(seen)} events at seq {position[1]}; "
              f"away for {args.gap}s")
        await trio.sleep(args.gap)

        # Phase 2: a new connection that continues the old stream (a restarted process
        # would have saved `position` to disk).
        async with swim.connect(args.url, args.key, resume_from=position) as second:
            await second.subscribe(channels)
            with trio.move_on_after(duration):
                async for item in second:
                    if isinstance(item, swim.Resumed):
                        print(f"resumed from seq {item.from_seq}: recovered={item.recovered}"
                              + (f" ({item.reason})" if item.reason else ""))
                    elif isinstance(item, swim.Event) and item.seq is not None:
                        seen.add(item.seq)
            hub_end = second.last_seq or 0
        await trio.sleep(0.5)  # let the witness read up to where we stopped
        nursery.cancel_scope.cancel()
    end = min(hub_end, max(witnessed, default=0))
    window = {s for s in witnessed if start <= s <= end}
    missed = sorted(window - seen)
    print(f"witness saw {len(window)} events in seq {start}..{end}; we saw "
          f"{len([s for s in seen if start <= s <= end])}")
    print(f"missed {len(missed)} events" + (f": {missed[:20]}" if missed else ""))


if __name__ == "__main__":
    trio.run(main)
