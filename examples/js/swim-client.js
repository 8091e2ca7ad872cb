// A minimal SWIM hub client for browsers and Node.js (>= 22, or 20 with
// --experimental-websocket): no dependencies, just the standard WebSocket API.
//
// It connects with the key in the query string (`?api_key=`), because the browser WebSocket
// API cannot set headers. That is the hub's compatibility transport: the URL can end up in
// proxy logs, so give browser code a low-tier key, and never log the URL.
//
// It subscribes once, prints events, and on every reconnect (exponential backoff with jitter)
// resumes from the last `seq` it processed in the hub's `epoch`, so nothing the hub still
// holds is missed or repeated. See docs/protocol.md for the protocol.
//
// Node:    SWIM_API_KEY=... node --experimental-websocket swim-client.js --url ws://HOST:8090/api/swim/v1/ws
// Browser: open index.html (it loads this file and uses SwimClient).

"use strict";

class SwimClient {
  /**
   * @param {string} url      hub URL, e.g. "wss://swim.example.net/api/swim/v1/ws"
   * @param {string} apiKey   API key (sent as ?api_key=)
   * @param {object} options  channels, filters, onEvent(envelope), onStatus(text),
   *                          backoffInitial / backoffMax (ms)
   */
  constructor(url, apiKey, options = {}) {
    this.url = url;
    this.apiKey = apiKey;
    this.channels = options.channels || ["flight.*", "tmi.*"];
    this.filters = options.filters || {};
    this.onEvent = options.onEvent || (() => {});
    this.onStatus = options.onStatus || (() => {});
    this.backoffInitial = options.backoffInitial || 500;
    this.backoffMax = options.backoffMax || 30000;
    this.epoch = null; // the hub's stream epoch: a new one means the hub restarted
    this.lastSeq = null; // highest seq processed: the resume position
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
    this.heartbeatMs = 30000;
    this.watchdog = null;
    this.retryTimer = null;
  }

  start() {
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.watchdog);
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "client stopping");
  }

  // Drop the current connection as a network failure would; the client reconnects and resumes.
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the client");
  }

  _open() {
    const sep = this.url.includes("?") ? "&" : "?";
    const ws = new WebSocket(this.url + sep + "api_key=" + encodeURIComponent(this.apiKey));
    this.ws = ws;
    ws.onmessage = (msg) => this._message(ws, msg.data);
    ws.onclose = (ev) => this._closed(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // always followed by close, which decides what to do
    this._armWatchdog(ws);
  }

  // No message for two heartbeat intervals: the path is dead even if TCP has not noticed.
  _armWatchdog(ws) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      this.onStatus("no heartbeat from the hub: reconnecting");
      ws.close(4000, "silent");
    }, 2 * this.heartbeatMs + 5000);
  }

  _message(ws, text) {
    if (ws !== this.ws) return;
    this._armWatchdog(ws);
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    switch (msg.type) {
      case "connected": {
        const d = msg.data;
        this.attempt = 0;
        this.heartbeatMs = (d.heartbeat_interval || 30) * 1000; // may be fractional
        this._armWatchdog(ws);
        if (this.epoch !== null && d.epoch !== this.epoch) {
          // The hub restarted: its history is gone and seq numbering started over.
          this.onStatus(`hub restarted (epoch ${this.epoch} -> ${d.epoch}): events missed`);
          this.lastSeq = null;
        }
        this.epoch = d.epoch;
        const req = { action: "subscribe", id: "sub", channels: this.channels };
        if (Object.keys(this.filters).length) req.filters = this.filters;
        // One subscribe only, so it can carry the resume and nothing arrives before the
        // replay (several subscribes: see docs/protocol.md, section 6).
        if (this.lastSeq !== null) req.resume = { epoch: this.epoch, seq: this.lastSeq };
        ws.send(JSON.stringify(req));
        this.onStatus(`connected (tier ${d.tier})`);
        return;
      }
      case "subscribed":
        if ("recovered" in msg) this.onStatus(`resumed: recovered=${msg.recovered}`);
        else this.onStatus(`subscribed: ${msg.channels.join(",")}`);
        return;
      case "error":
        this.onStatus(`hub error ${msg.code}: ${msg.message}`);
        return;
      case "pong":
        return;
    }
    if (typeof msg.seq === "number") {
      if (this.lastSeq !== null && msg.seq <= this.lastSeq) return; // already processed
      this.lastSeq = msg.seq;
    }
    this.onEvent(msg); // heartbeats and snapshot frames come without seq
  }

  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    clearTimeout(this.watchdog);
    this.ws = null;
    if (this.stopped) return;
    // What to do depends on the close code (docs/protocol.md, section 9).
    if (code === 4001) {
      this.stopped = true;
      this.onStatus("authentication failed: not retrying (check the key)");
      return;
    }
    if (code === 4003) {
      this.stopped = true;
      this.onStatus("closed for protocol violations: fix the client before retrying");
      return;
    }
    this.attempt += 1;
    let delay = Math.min(this.backoffMax, this.backoffInitial * 2 ** (this.attempt - 1));
    if (code === 4002) delay = Math.max(delay, 60000); // connection limit: back off long
    delay *= 0.5 + Math.random() / 2; // jitter, so many clients do not return at once
    this.onStatus(`disconnected (${code}${reason ? " " + reason : ""}); ` +
                  `retrying in ${(delay / 1000).toFixed(1)}s`);
    this.retryTimer = setTimeout(() => this._open(), delay);
  }
}

// One line per event: seq, type, and what matters most about it.
function describe(ev) {
  const d = ev.data || {};
  if (ev.type === "flight.positions") return `${d.count} positions`;
  if (ev.type.startsWith("tmi.") && d.program_id) return `${d.program_id} ${d.status}`;
  if (ev.type === "tmi.active") return `${(d.programs || []).length} active programs`;
  if (d.callsign) return `${d.callsign} ${d.dep || "????"} -> ${d.arr || "????"}`;
  return "";
}

// Node command line: the test runs this against a real hub.
function main() {
  const args = { url: process.env.SWIM_URL || "ws://127.0.0.1:8090/api/swim/v1/ws",
                 channels: "flight.departed,flight.arrived,tmi.*", airport: "",
                 "max-events": "0", "drop-after": "0", duration: "0" };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "");
    if (!(name in args) || argv[i + 1] === undefined) {
      console.error(`usage: swim-client.js [--url U] [--channels a,b] [--airport KJFK,...] ` +
                    `[--max-events N] [--drop-after N] [--duration S]  (key: SWIM_API_KEY)`);
      process.exit(2);
    }
    args[name] = argv[i + 1];
  }
  const key = process.env.SWIM_API_KEY; // not an argument: argv is visible in `ps`
  if (!key) {
    console.error("set SWIM_API_KEY");
    process.exit(2);
  }
  if (typeof WebSocket !== "function") {
    console.error("no global WebSocket: use Node >= 22, or node --experimental-websocket");
    process.exit(2);
  }
  const maxEvents = Number(args["max-events"]);
  const dropAfter = Number(args["drop-after"]);
  const filters = args.airport ? { airports: args.airport.split(",") } : {};
  let count = 0;
  const client = new SwimClient(args.url, key, {
    channels: args.channels.split(","),
    filters,
    onStatus: (text) => console.log(text),
    onEvent: (ev) => {
      if (ev.type === "system.heartbeat") return;
      console.log(`${ev.seq ?? "-"} ${ev.type} ${describe(ev)}`);
      if (ev.seq === undefined) return; // snapshot frames are state, not stream events
      count += 1;
      if (count === dropAfter) {
        console.log(`dropping the connection after seq ${ev.seq}`);
        client.drop();
      }
      if (maxEvents && count >= maxEvents) finish();
    },
  });
  function finish() {
    client.stop();
    setTimeout(() => process.exit(0), 100);
  }
  if (Number(args.duration) > 0) setTimeout(finish, Number(args.duration) * 1000);
  client.start();
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { SwimClient, describe };
  if (require.main === module) main();
} else {
  globalThis.SwimClient = SwimClient;
  globalThis.describeSwimEvent = describe;
}
