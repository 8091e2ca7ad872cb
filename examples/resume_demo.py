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
from common import parse, parser, run

from swimctl import client as swim


async def watch(client: swim.SwimClient, seqs: dict[int, str]) -> None:
    """Collect seq -> type of every stream event (heartbeats and snapshots have none)."""
    async for item in client:
        if isinstance(item, swim.Event) and item.seq is not None:
            seqs[item.seq] = item.type


async def read_resumed(client: swim.SwimClient, seqs: set[int]) -> None:
    """Like `watch`, and say whether the hub could replay everything we missed."""
    async for item in client:
        if isinstance(item, swim.Resumed):
            print(f"resumed from seq {item.from_seq}: recovered={item.recovered}"
                  + (f" ({item.reason})" if item.reason else ""))
        elif isinstance(item, swim.Event) and item.seq is not None:
            seqs.add(item.seq)


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--channels", default="flight.*,tmi.*", help="comma-separated patterns")
    p.add_argument("--drop-after", type=int, default=20, help="events before the drop")
    p.add_argument("--gap", type=float, default=3.0, help="seconds to stay away")
    args = parse(p)
    channels = args.channels.split(",")
    duration = args.duration if args.duration > 0 else 10.0
    witnessed: dict[int, str] = {}
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
        async with swim.connect(args.url, args.key, resume_from=position) as second, \
                trio.open_nursery() as reading:
            # Read before subscribing: the replay can hold more items than the client's
            # queue (queue_size), and `subscribe` returns only once the replay is queued.
            reading.start_soon(read_resumed, second, seen)
            await second.subscribe(channels)
            await trio.sleep(duration)
            reading.cancel_scope.cancel()
        await trio.sleep(0.5)  # let the witness read up to where we stopped
        nursery.cancel_scope.cancel()
    # Compare up to the last event both have processed; later ones may still be in flight.
    end = min(max(seen), max(witnessed, default=0))
    window = {s for s in witnessed if start <= s <= end}
    lost = window - seen
    # A positions batch is state: when batches queue up for a connection (a long replay is
    # one way), the hub replaces an older queued batch with the newer one. That is not a
    # missed event: the newer batch carries every flight's latest position.
    superseded = sorted(s for s in lost if witnessed[s] == "flight.positions")
    missed = sorted(lost - set(superseded))
    print(f"witness saw {len(window)} events in seq {start}..{end}; we saw "
          f"{len(window & seen)}")
    if superseded:
        print(f"{len(superseded)} positions batches superseded by newer ones: {superseded[:10]}")
    print(f"missed {len(missed)} events" + (f": {missed[:20]}" if missed else ""))

if __name__ == "__main__":
    run(main)
