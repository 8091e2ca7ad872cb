"""`swimctl serve`: run the hub."""

from __future__ import annotations

import datetime as dt
import difflib
import os
import shutil
import ssl
import sys
from pathlib import Path

import platformdirs
import trio
import typer
from typer._click.core import ParameterSource

from swimctl.cli.common import DbOption, fail, leaf_exceptions, resolve_db
from swimctl.core.channels import DEFAULT_CHANNELS, RELAYED_FAMILIES
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
from swimctl.keys import KeyStore, KeyStoreError
from swimctl.keys.records import DEFAULT_TIER_CAPS
from swimctl.logs import setup_logging
from swimctl.stream.durable import StateDirError

TIER_LIMIT_HELP = "Connections per key for a tier, TIER=N (repeatable). Defaults: " + ", ".join(
    f"{tier}={cap}" for tier, cap in DEFAULT_TIER_CAPS.items())

# Options --demo sets itself: given on the command line, they would be silently ignored.
DEMO_OWNS = {"db": "--db"}


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


def check_broker(url: str) -> str | None:
    """Why `--broker` cannot work, or None (checked before listening; reachability is the
    hub's to report, since Redis may come up after it)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"):
        return (f"--broker {url!r}: give a Redis URL, redis://HOST:PORT/DB (rediss:// for "
                "TLS, unix:///path/redis.sock, redis+sentinel://HOST:PORT/SERVICE, "
                "redis+cluster://HOST:PORT)")
    return None


def parse_families(values: list[str]) -> tuple[str, ...]:
    """`--family` values (each may list several, comma- or space-separated, as SWIM_FAMILIES
    does), checked the way the hub will take them; ValueError names the bad one."""
    names = tuple(n for value in values for n in value.replace(",", " ").split())
    DEFAULT_CHANNELS.with_families(names)
    return names


def check_feed(spec: str) -> str | None:
    """Why `--feed` cannot work, or None: 'vatsim', an http(s) URL, or an existing snapshot
    file or directory (checked before the hub listens, so a typo is the first thing said)."""
    if spec in ("vatsim", SIM_SPEC) or spec.startswith(("http://", "https://")):
        return None
    if os.path.exists(spec):
        return None
    close = difflib.get_close_matches(spec, ["vatsim", SIM_SPEC])
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"--feed {spec!r}: not 'vatsim', 'sim', an http(s) URL, or an existing snapshot "
            f"file or directory{hint}")


def check_tls(cert: str, key: str) -> str | None:
    """Why the certificate and key cannot be loaded, naming the file at fault, or None."""
    for flag, path, marker in (("--tls-cert", cert, b"-----BEGIN CERTIFICATE-----"),
                               ("--tls-key", key, b"PRIVATE KEY-----")):
        if not os.path.isfile(path):
            return f"{flag} {path}: no such file"
        try:
            with open(path, "rb") as handle:
                text = handle.read(1 << 20)
        except OSError as exc:
            return f"{flag} {path}: {exc.strerror or exc}"
        if marker not in text:
            what = "certificate" if flag == "--tls-cert" else "private key"
            return f"{flag} {path}: no PEM {what} in it"
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            return f"--tls-key {key} does not belong to the certificate in --tls-cert {cert}"
        return f"--tls-cert {cert} / --tls-key {key}: cannot load them ({reason}); both PEM?"
    except OSError as exc:
        return f"--tls-cert {cert} / --tls-key {key}: {exc.strerror or exc}"
    return None


def check_paths(events_file: str | None, record: str | None) -> str | None:
    """An events file in a directory that does not exist would be waited for forever; a
    record directory that cannot be made would fail only after the hub listens."""
    if events_file:
        parent = Path(events_file).resolve().parent
        if not parent.is_dir():
            return f"--events-file {events_file}: no such directory {parent}"
        if Path(events_file).is_dir():
            return f"--events-file {events_file}: is a directory, not a file"
    if record:
        target = Path(record)
        if target.exists() and not target.is_dir():
            return f"--record {record}: exists and is not a directory"
        try:  # made now rather than by the recorder, so a failure is said before listening
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"--record {record}: cannot create it: {exc.strerror or exc}"
        if not os.access(target, os.W_OK):
            return f"--record {record}: not writable"
    return None


def default_state_dir() -> str:
    return str(Path(platformdirs.user_data_dir("swimctl")) / "state")


def program_name() -> str:
    """How to run swimctl again, as the user ran it: `swimctl` when that is on PATH, else the
    path it was started by (a venv's bin/swimctl, a binary in the current directory)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "swimctl"
    if argv0.endswith("__main__.py"):  # python -m swimctl
        return f"{sys.executable} -m swimctl"
    found = shutil.which("swimctl")
    try:
        if found and os.path.samefile(found, argv0):
            return "swimctl"
    except OSError:
        pass
    return os.path.abspath(argv0) if os.path.exists(argv0) else "swimctl"


def _given(ctx: typer.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", envvar="SWIM_HOST", metavar="HOST",
                             help="Address to listen on."),
    port: int = typer.Option(DEFAULT_PORT, envvar="SWIM_PORT", metavar="PORT", min=0, max=65535,
                             help="TCP port, 1-65535; 0 picks a free one."),
    db: str = DbOption,
    heartbeat: float = typer.Option(30.0, envvar="SWIM_HEARTBEAT", min=0.05, metavar="SECONDS",
                                    help="Seconds between system.heartbeat events."),
    history_size: int = typer.Option(100_000, envvar="SWIM_HISTORY_SIZE", min=0, metavar="COUNT",
                                     help="Events held for resume (count)."),
    history_age: float = typer.Option(3600.0, envvar="SWIM_HISTORY_AGE", min=0,
                                      metavar="SECONDS",
                                      help="Events held for resume (seconds; 0 = no age bound)."),
    history_bytes: int = typer.Option(
        64 * 1024 * 1024, envvar="SWIM_HISTORY_BYTES", min=0, metavar="BYTES",
        help="Events held for resume (payload bytes; 0 = no byte bound)."),
    state_dir: str = typer.Option(
        None, envvar="SWIM_STATE_DIR", metavar="DIR",
        help="Keep the stream (epoch, seq, history) here across restarts; 'none' keeps it in "
        "memory only. Default: 'state' in the user data directory."),
    tier_limit: list[str] = typer.Option(
        [], "--tier-limit", envvar="SWIM_TIER_LIMIT", metavar="TIER=N",
        help=TIER_LIMIT_HELP,
    ),
    outbox_limit: int = typer.Option(
        4 * 1024 * 1024, envvar="SWIM_OUTBOX_LIMIT", min=65536, metavar="BYTES",
        help="Unsent bytes allowed per client before it is closed (4008)."),
    coalesce_ms: float = typer.Option(
        1.0, envvar="SWIM_COALESCE_MS", min=0, max=1000, metavar="MS",
        help="Events published within this many ms of the last fan-out are written to each "
        "client together (one system call per burst); 0 writes each event on its own."),
    max_frame_bytes: int = typer.Option(
        64 * 1024, envvar="SWIM_MAX_FRAME_BYTES", min=4096, metavar="BYTES",
        help="Largest frame the hub sends, header included; a bigger positions batch goes "
        "out in parts. 64 KiB suits every PERTI SDK (the C# one reads 64 KiB at most)."),
    family: list[str] = typer.Option(
        [], "--family", envvar="SWIM_FAMILIES", metavar="NAME",
        help="Relay one more event family (repeatable; SWIM_FAMILIES takes a list): NAME.* "
        "can be published by system-tier keys and subscribed to. Built in: "
        + ", ".join(RELAYED_FAMILIES) + "."),
    events_file: str = typer.Option(None, envvar="SWIM_EVENTS_FILE", metavar="FILE",
                                    help="Follow this JSON Lines event file."),
    feed: str = typer.Option(None, envvar="SWIM_FEED", metavar="SOURCE",
                             help="VATSIM feed: 'vatsim', a URL, a snapshot file or directory, "
                             "or 'sim' (the traffic simulator)."),
    feed_interval: float = typer.Option(15.0, envvar="SWIM_FEED_INTERVAL", min=0,
                                        metavar="SECONDS",
                                        help="Seconds between feed cycles (0 = flat out)."),
    feed_loop: bool = typer.Option(False, "--feed-loop", envvar="SWIM_FEED_LOOP",
                                   help="Start a file/directory feed over at its end."),
    sim_pilots: int = typer.Option(
        None, envvar="SWIM_SIM_PILOTS", min=0, max=200_000, show_default=False, metavar="N",
        help=f"--feed sim: pilots online (default {SIM_PILOTS:,}; --demo {DEMO_SIM_PILOTS:,})."),
    sim_seed: int = typer.Option(
        None, envvar="SWIM_SIM_SEED", min=0, show_default=False, metavar="N",
        help="--feed sim: random seed (default 1); the same seed and start give the same "
        "traffic."),
    sim_speed: float = typer.Option(
        None, envvar="SWIM_SIM_SPEED", min=0.01, max=1000, show_default=False, metavar="FACTOR",
        help=f"--feed sim: time speed-up (default 1; --demo {DEMO_SIM_SPEED:g})."),
    sim_start: str = typer.Option(
        None, envvar="SWIM_SIM_START", show_default=False, metavar="TIME",
        help="--feed sim: simulated start time, ISO 8601 (default: now)."),
    record: str = typer.Option(None, "--record", envvar="SWIM_RECORD", metavar="DIR",
                               help="Write the whole stream to hourly files in this directory."),
    auth_fail_burst: int = typer.Option(
        20, envvar="SWIM_AUTH_FAIL_BURST", min=0, metavar="N",
        help="Failed authentications one address (IPv6: one /64) may make before its "
        "handshakes are refused without a lookup; 0 turns the throttle off (behind a proxy "
        "every client shares its address)."),
    auth_fail_rate: float = typer.Option(
        1.0, envvar="SWIM_AUTH_FAIL_RATE", min=0, metavar="PER_SECOND",
        help="Failed authentications per second an address earns back."),
    handshake_timeout: float = typer.Option(
        3.0, envvar="SWIM_HANDSHAKE_TIMEOUT", min=0.1, metavar="SECONDS",
        help="Seconds a connection has to send its whole upgrade request (TLS: 2 more)."),
    handshakes_per_address: int = typer.Option(
        64, envvar="SWIM_HANDSHAKES_PER_ADDRESS", min=0, metavar="N",
        help="Unfinished upgrade requests one address (IPv6: one /64) may hold open; more "
        "connections from it are closed at once. 0 = no cap."),
    legacy_keys: bool = typer.Option(
        False, "--legacy-keys", envvar="SWIM_LEGACY_KEYS",
        help="Also accept keys without the swim_xxx_<64 hex> format (plain-text keys of an "
        "older deployment, hashed by `keys migrate`)."),
    tls_cert: str = typer.Option(None, envvar="SWIM_TLS_CERT", metavar="FILE",
                                 help="PEM certificate (wss://)."),
    tls_key: str = typer.Option(None, envvar="SWIM_TLS_KEY", metavar="FILE",
                                help="PEM private key."),
    broker: str = typer.Option(
        None, envvar="SWIM_BROKER", metavar="URL",
        help="Share one event log with other hubs: redis://HOST:PORT/DB (rediss:// for TLS). "
        "Every hub on the same Redis serves the same events, seqs, history and limits."),
    feed_lease_ttl: float = typer.Option(
        30.0, envvar="SWIM_FEED_LEASE_TTL", min=1.0, max=300.0, metavar="SECONDS",
        help="With --broker: seconds a source's lease (the feed, the events file) outlives its "
        "leader's last renewal; a dead leader is replaced within this plus one feed interval."),
    compression: str = typer.Option(
        "on", envvar="SWIM_COMPRESSION", metavar="ON|OFF",
        help="permessage-deflate for clients that offer it: each event is compressed once and "
        "the same frame goes to all of them (about a fifth of the bytes of positions)."),
    metrics_port: int = typer.Option(None, envvar="SWIM_METRICS_PORT", metavar="PORT",
                                     min=0, max=65535,
                                     help="Serve Prometheus /metrics and /healthz on this port."),
    demo: bool = typer.Option(False, "--demo", envvar="SWIM_DEMO",
                              help="No setup, no network: a temporary key store, a demo key, "
                              "simulated VATSIM traffic and a sample ground stop."),
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
    if compression.lower() not in ("on", "off"):
        fail(f"--compression must be on or off, not {compression!r}")
    if bool(tls_cert) != bool(tls_key):
        fail("--tls-cert and --tls-key go together")
    try:
        caps = parse_tier_caps(tier_limit)
        families = parse_families(family)
    except ValueError as exc:
        fail(f"--family: {exc}" if "family" in str(exc) else str(exc))
    problem = ((check_broker(broker) if broker else None)
               or (check_feed(feed) if feed else None)
               or (check_tls(tls_cert, tls_key) if tls_cert and tls_key else None)
               or check_paths(events_file, record))
    if problem:
        fail(problem)
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
    if demo:
        for name, flag in DEMO_OWNS.items():
            if _given(ctx, name):
                fail(f"{flag} cannot be used with --demo: the demo makes its own throw-away "
                     "key store")
    elif db:
        try:
            KeyStore(db)
        except KeyStoreError as exc:
            fail(f"--db: {exc}")
    setup_logging(log_level, log_format)
    on_ready = None
    setup = None
    if demo:
        if db:  # from SWIM_DB: not an option the user typed here, so a note, not a refusal
            typer.echo("swimctl: note: SWIM_DB is not used with --demo (it makes its own "
                       "throw-away key store)", err=True)
        setup = prepare_demo()
        db = setup.db_url
        if not _given(ctx, "state_dir"):  # the demo's stream is as throw-away as its keys
            state_dir = str(Path(setup.workdir.name) / "state")
        feed = feed or SIM_SPEC
        feed_loop = True
        if not _given(ctx, "feed_interval"):
            feed_interval = DEMO_FEED_INTERVAL
        if not _given(ctx, "heartbeat"):
            heartbeat = DEMO_FEED_INTERVAL  # so a watcher sees the hub's pulse and feed age
        program = program_name()

        async def on_ready(handle: ServiceHandle) -> None:
            await issue_sample_ground_stop(handle.hub)
            shown = sim if sim is not None else sim_config(None, None, None, None, demo=True)
            typer.echo(banner(handle.url, setup.api_key, system_key=setup.system_key,
                              program=program, pilots=shown.pilots, speed=shown.speed))

    if state_dir is None:
        state_dir = default_state_dir()
    config = HubConfig(
        host=host, port=port, db_url=resolve_db(db), heartbeat_interval=heartbeat,
        history_size=history_size, history_age=history_age, history_bytes=history_bytes,
        state_dir=None if state_dir.lower() in ("", "none") else state_dir,
        handshake_timeout=handshake_timeout, handshakes_per_address=handshakes_per_address,
        tier_caps=caps,
        outbox_limit=outbox_limit, coalesce_window=coalesce_ms / 1000.0,
        tls_cert=tls_cert, tls_key=tls_key, auth_fail_burst=auth_fail_burst,
        auth_fail_rate=auth_fail_rate, legacy_keys=legacy_keys, broker=broker,
        feed_lease_ttl=feed_lease_ttl, compression=compression.lower() == "on",
        max_frame_bytes=max_frame_bytes, families=families,
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
            if isinstance(leaf, StateDirError):
                fail(f"--state-dir: {leaf}")
            if isinstance(leaf, ssl.SSLError):
                fail(f"TLS: {leaf.reason or leaf}")
            if isinstance(leaf, OSError) and leaf.errno is not None:
                fail(f"cannot serve on {host}:{port}: {leaf.strerror or leaf}")
            if isinstance(leaf, OSError | KeyStoreError):
                fail(str(leaf))
        raise
    finally:
        if setup is not None:
            setup.workdir.cleanup()
