"""`swimctl serve`: run the hub."""

from __future__ import annotations

import ssl

import trio
import typer

from swimctl.cli.common import DbOption, fail, leaf_exceptions, resolve_db
from swimctl.hub.config import DEFAULT_PORT, HubConfig
from swimctl.hub.demo import DEMO_FEED_INTERVAL, banner, issue_sample_ground_stop, prepare_demo
from swimctl.hub.service import ServeOptions, ServiceHandle, run_service
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


def serve(
    host: str = typer.Option("127.0.0.1", envvar="SWIM_HOST", metavar="HOST",
                             help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, envvar="SWIM_PORT", metavar="PORT",
                             help="TCP port, 1-65535; 0 picks a free one."),
    db: str = DbOption,
    heartbeat: float = typer.Option(30.0, envvar="SWIM_HEARTBEAT", min=0.05, metavar="SECONDS",
                                    help="Seconds between system.heartbeat events."),
    history_size: int = typer.Option(100_000, envvar="SWIM_HISTORY_SIZE", min=0, metavar="COUNT",
                                     help="Events held for resume (count)."),
    history_age: float = typer.Option(3600.0, envvar="SWIM_HISTORY_AGE", min=0,
                                      metavar="SECONDS",
                                      help="Events held for resume (seconds; 0 = no age bound)."),
    tier_limit: list[str] = typer.Option(
        [], "--tier-limit", envvar="SWIM_TIER_LIMIT", metavar="TIER=N",
        help="Connections per key for a tier, TIER=N (repeatable). Defaults: "
        + ", ".join(f"{t}={n}" for t, n in DEFAULT_TIER_CAPS.items()),
    ),
    outbox_limit: int = typer.Option(
        4 * 1024 * 1024, envvar="SWIM_OUTBOX_LIMIT", min=65536, metavar="BYTES",
        help="Unsent bytes allowed per client before it is closed (4008)."),
    coalesce_ms: float = typer.Option(
        1.0, envvar="SWIM_COALESCE_MS", min=0, max=1000, metavar="MS",
        help="Events published within this many ms of the last fan-out are written to each "
        "client together (one system call per burst); 0 writes each event on its own."),
    events_file: str = typer.Option(None, envvar="SWIM_EVENTS_FILE", metavar="FILE",
                                    help="Follow this JSON Lines event file."),
    feed: str = typer.Option(None, envvar="SWIM_FEED", metavar="SOURCE",
                             help="VATSIM feed: 'vatsim', a URL, a snapshot file or directory."),
    feed_interval: float = typer.Option(15.0, envvar="SWIM_FEED_INTERVAL", min=0,
                                        metavar="SECONDS",
                                        help="Seconds between feed cycles (0 = flat out)."),
    feed_loop: bool = typer.Option(False, "--feed-loop", envvar="SWIM_FEED_LOOP",
                                   help="Start a file/directory feed over at its end."),
    record: str = typer.Option(None, "--record", envvar="SWIM_RECORD", metavar="DIR",
                               help="Write the whole stream to hourly files in this directory."),
    tls_cert: str = typer.Option(None, envvar="SWIM_TLS_CERT", metavar="FILE",
                                 help="PEM certificate (wss://)."),
    tls_key: str = typer.Option(None, envvar="SWIM_TLS_KEY", metavar="FILE",
                                help="PEM private key."),
    metrics_port: int = typer.Option(None, envvar="SWIM_METRICS_PORT", metavar="PORT",
                                     help="Serve Prometheus /metrics and /healthz on this port."),
    demo: bool = typer.Option(False, "--demo", envvar="SWIM_DEMO",
                              help="No setup, no network: a temporary key store, a demo key, "
                              "recorded VATSIM traffic in a loop and a sample ground stop."),
    log_level: str = typer.Option("info", envvar="SWIM_LOG_LEVEL", metavar="LEVEL",
                                  help="debug, info, warning or error."),
    log_format: str = typer.Option("text", envvar="SWIM_LOG_FORMAT", metavar="FORMAT",
                                   help="text or json."),
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
    setup_logging(log_level, log_format)
    on_ready = None
    setup = None
    if demo:
        setup = prepare_demo()
        db = setup.db_url
        feed = feed or setup.feed_dir
        feed_loop = True
        if feed_interval == 15.0:
            feed_interval = DEMO_FEED_INTERVAL
        if heartbeat == 30.0:
            heartbeat = DEMO_FEED_INTERVAL  # so a watcher sees the hub's pulse and feed age

        def on_ready(handle: ServiceHandle) -> None:
            issue_sample_ground_stop(handle.hub)
            typer.echo(banner(handle.url, setup.api_key))

    config = HubConfig(
        host=host, port=port, db_url=resolve_db(db), heartbeat_interval=heartbeat,
        history_size=history_size, history_age=history_age, tier_caps=caps,
        outbox_limit=outbox_limit, coalesce_window=coalesce_ms / 1000.0,
        tls_cert=tls_cert, tls_key=tls_key,
    )
    options = ServeOptions(
        config=config, events_file=events_file, feed=feed, feed_interval=feed_interval,
        feed_loop=feed_loop, record_dir=record, handle_signals=True,
        metrics_port=metrics_port, on_ready=on_ready, feed_as_live=demo,
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
