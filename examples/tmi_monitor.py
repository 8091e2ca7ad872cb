"""The active ground stops (GS) and ground delay programs (GDP), kept current.

    SWIM_API_KEY=... python examples/tmi_monitor.py [--airport KJFK,KEWR]

State comes from the hub's snapshot (`tmi.active`) and is then kept by applying
`tmi.issued` / `tmi.modified` / `tmi.released`. Every update carries the program's whole
record, so we replace rather than merge. After a reconnect the client asks for a new snapshot,
which rebuilds the state even if events were missed.
"""

from __future__ import annotations

import trio
from common import deadline, parse, parser, run, split_list

from swimctl import client as swim
from swimctl.core.model import TmiProgram


def describe(p: TmiProgram) -> str:
    text = f"{p.program_id} {p.program_type} {p.airport} until {p.end_time[11:16]}Z"
    if p.program_type == "GDP":
        text += f" rate {p.program_rate}/h avg {p.avg_delay_min} max {p.max_delay_min} min"
    return text + (f" ({p.reason})" if p.reason else "")


def show(active: dict[str, TmiProgram]) -> None:
    print(f"active programs: {len(active)}")
    for program in active.values():
        print(f"  {describe(program)}")


async def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--airport", help="comma-separated ICAO codes (default: all)")
    args = parse(p)
    active: dict[str, TmiProgram] = {}
    seen = 0
    with trio.move_on_after(deadline(args)):
        async with swim.connect(args.url, args.key) as client:
            await client.subscribe(["tmi.*"], airports=split_list(args.airport), snapshot=True)
            async for item in client:
                if not isinstance(item, swim.Event) or item.is_heartbeat:
                    continue
                if item.type == "tmi.active":  # the snapshot: the whole state
                    active = {prog.program_id: prog for prog in item.programs}
                    print("snapshot")
                    show(active)
                    continue
                program = item.program
                if program is None:
                    continue
                if item.type == "tmi.released" or program.status != "ACTIVE":
                    active.pop(program.program_id, None)
                    print(f"{item.type}: {program.program_id} ({program.status})")
                else:
                    active[program.program_id] = program
                    print(f"{item.type}: {describe(program)}")
                show(active)
                seen += 1
                if args.max_events and seen >= args.max_events:
                    break
    print("final: ", end="")
    show(active)


if __name__ == "__main__":
    run(main)
