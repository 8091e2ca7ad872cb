"""`swimctl serve`: run the hub."""

from __future__ import annotations

import datetime as dt
import ssl

import trio
import typer

from swimctl.cli.common import DbOption, fail, leaf_exceptions, resolve_db
from swimctl.core.model import parse_ts
from swimctl.core.sim import SimConfig
from swimctl.hub.config import DEFAULT_PORT, HubConfig
from swimctl.hub.demo import (
    DEMO_FEED_INTERVAL,
    DEMO_SIM_PILOTS,
    DEMO_SIM_SPEED,
    banner,
    issue_sample_ground_stop,
    prepare_demo,
)
from swimctl.hub.service import ServeOptions, ServiceHandle, run_service
from swimctl.hub.sources.feed import SIM_SPEC
from swimctl.keys.records import DEFAULT_TIER_CAPS
from swimctl.logs import setup_logging


def parse_tier_caps(values: list[str]) -> dict[str, int]:
    caps = dict(DEFAULT_TIER_CAPS)
    for item in values:
        tier, sep, number = item.partition("=")
        if not sep or tier not in caps or not number.isdigit():
            raise ValueError(f"--tier-limit takes TIER=N with TIER one of {', '.join(caps)}")
        caps[tier] = int(number)
    return caps


SIM_PILOTS = 2000  # --feed sim without --sim-pilots


def sim_config(pilots: int | None, seed: int | None, speed: float | None, start: str | None,
               demo: bool) -> SimConfig:
    """The simulator's settings from the --sim-* options (the demo's when not given)."""
    when = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if start is not None:
        try:
            when = parse_ts(start)
        except ValueError:
            raise ValueError(f"--sim-start {start!r} is not an ISO 8601 time "
                             "(e.g. 2026-01-01T18:00:00Z)") from None
    return SimConfig(
        pilots=pilots if pilots is not None else DEMO_SIM_PILOTS if demo else SIM_PILOTS,
        seed=seed if seed is not None else 1,
        start=when,
        speed=speed if speed is not None else DEMO_SIM_SPEED if demo else 1.0,
    )


def serve(
    host: str = typer.Option("127.0.0.1", envvar="SWIM_HOST", help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, envvar="SWIM_PORT", help="TCP port; 0 picks one."),
    db: str = DbOption,
    heartbeat: float = typer.Option(30.0, envvar="SWIM_HEARTBEAT", min=0.05,
                                    help="Seconds between system.heartbeat events."),
    history_size: int = typer.Option(100_000, envvar="SWIM_HISTORY_SIZE", min=0,
                                     help="Events held for resume (count)."),
    history_age: float = typer.Option(3600.0, envvar="SWIM_HISTORY_AGE", min=0,
                                      help="Events held for resume (seconds; 0 = no age bound)."),
    tier_limit: list[str] = typer.Option(
        [], "--tier-limit", envvar="SWIM_TIER_LIMIT",
        help="Connections per key for a tier, TIER=N (repeatable). Defaults: "
        + ", ".join(f"{t}={n}" for t, n in DEFAULT_TIER_CAPS.items()),
    ),
    outbox_limit: int = typer.Option(
        4 * 1024 * 1024, envvar="SWIM_OUTBOX_LIMIT", min=65536,
        help="Unsent bytes allowed per client before it is closed (4008)."),
    coalesce_ms: float = typer.Option(
        1.0, envvar="SWIM_COALESCE_MS", min=0, max=1000,
        help="Events published within this many ms of the last fan-out are written to each "
        "client together (one system call per burst); 0 writes each event on its own."),
    events_file: str = typer.Option(None, envvar="SWIM_EVENTS_FILE",
                                    help="Follow this JSON Lines event file."),
    feed: str = typer.Option(None, envvar="SWIM_FEED",
                             help="VATSIM feed: 'vatsim', a URL, a snapshot file or directory, "
                             "or 'sim' (the traffic simulator)."),
    feed_interval: float = typer.Option(15.0, envvar="SWIM_FEED_INTERVAL", min=0,
                                        help="Seconds between feed cycles (0 = flat out)."),
    feed_loop: bool = typer.Option(False, "--feed-loop", envvar="SWIM_FEED_LOOP",
                                   help="Start a file/directory feed over at its end."),
    sim_pilots: int = typer.Option(
        None, envvar="SWIM_SIM_PILOTS", min=0, max=200_000, show_default=False,
        help=f"--feed sim: pilots online (default {SIM_PILOTS:,}; --demo {DEMO_SIM_PILOTS:,})."),
    sim_seed: int = typer.Option(
        None, envvar="SWIM_SIM_SEED", min=0, show_default=False,
        help="--feed sim: random seed (default 1); the same seed and start give the same "
        "traffic."),
    sim_speed: float = typer.Option(
        None, envvar="SWIM_SIM_SPEED", min=0.01, max=1000, show_default=False,
        help=f"--feed sim: time speed-up (default 1; --demo {DEMO_SIM_SPEED:g})."),
    sim_start: str = typer.Option(
        None, envvar="SWIM_SIM_START", show_default=False,
        help="--feed sim: simulated start time, ISO 8601 (default: now)."),
    record: str = typer.Option(None, "--record", envvar="SWIM_RECORD",
                               help="Write the whole stream to hourly files in this directory."),
    tls_cert: str = typer.Option(None, envvar="SWIM_TLS_CERT", help="PEM certificate (wss://)."),
    tls_key: str = typer.Option(None, envvar="SWIM_TLS_KEY", help="PEM private key."),
    metrics_port: int = typer.Option(None, envvar="SWIM_METRICS_PORT", min=0,
                                     help="Serve Prometheus /metrics and /healthz on this port."),
    demo: bool = typer.Option(False, "--demo", envvar="SWIM_DEMO",
                              help="No setup, no network: a temporary key store, a demo key, "
                              "simulated VATSIM traffic and a sample ground stop."),
    log_level: str = typer.Option("info", envvar="SWIM_LOG_LEVEL",
                                  help="debug, info, warning or error."),
    log_format: str = typer.Option("text", envvar="SWIM_LOG_FORMAT", help="text or json."),
) -> None:
    """Run the hub: WebSocket server, keys, subscriptions, history, heartbeat, sources."""
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail("--log-level must be debug, info, warning or error")
    if log_format not in ("text", "json"):
        fail("--log-format must be text or json")
    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together")
    try:
        caps = parse_tier_caps(tier_limit)
    except ValueError as exc:
        fail(str(exc))
    uses_sim = feed == SIM_SPEC or (demo and not feed)
    sim_options = (sim_pilots, sim_seed, sim_speed, sim_start)
    if not uses_sim and any(v is not None for v in sim_options):
        fail("--sim-pilots, --sim-seed, --sim-speed and --sim-start go with --feed sim "
             "(or --demo)")
    sim = None
    if uses_sim:
        try:
            sim = sim_config(*sim_options, demo=demo)
        except ValueError as exc:
            fail(str(exc))
    setup_logging(log_level, log_format)
    on_ready = None
    setup = None
    if demo:
        setup = prepare_demo()
        db = setup.db_url
        feed = feed or SIM_SPEC
        feed_loop = True
        if feed_interval == 15.0:
            feed_interval = DEMO_FEED_INTERVAL
        if heartbeat == 30.0:
            heartbeat = DEMO_FEED_INTERVAL  # so a watcher sees the hub's pulse and feed age

        def on_ready(handle: ServiceHandle) -> None:
            issue_sample_ground_stop(handle.hub)
            typer.echo(banner(handle.url, setup.api_key, *(
                (sim.pilots, sim.speed) if sim is not None else ())))

    config = HubConfig(
        host=host, port=port, db_url=resolve_db(db), heartbeat_interval=heartbeat,
        history_size=history_size, history_age=history_age, tier_caps=caps,
        outbox_limit=outbox_limit, coalesce_window=coalesce_ms / 1000.0,
        tls_cert=tls_cert, tls_key=tls_key,
    )
    options = ServeOptions(
        config=config, events_file=events_file, feed=feed, feed_interval=feed_interval,
        feed_loop=feed_loop, record_dir=record, handle_signals=True,
        metrics_port=metrics_port, on_ready=on_ready,
        feed_as_live=demo and feed != SIM_SPEC, sim=sim,
    )
    try:
        trio.run(run_service, options)
    except BaseException as exc:
        leaves = leaf_exceptions(exc)
        if all(isinstance(e, KeyboardInterrupt) for e in leaves):
            return
        for leaf in leaves:
            if isinstance(leaf, OSError) and leaf.errno is not None:
                fail(f"cannot serve on {host}:{port}: {leaf.strerror or leaf}")
            if isinstance(leaf, ssl.SSLError | FileNotFoundError):
                fail(f"TLS: {leaf}")
        raise
    finally:
        if setup is not None:
            setup.workdir.cleanup()
