//! Reconfiguration under load: while client threads keep sending requests
//! over keep-alive HTTP/1.1 connections, the plugin configuration is changed
//! through file-based LDS (the whole listener) and through ECDS (the filter
//! config alone): a new key is added next to the old one, the load moves to
//! it, the old key is retired, and three broken configs are pushed. No
//! request with a key that is valid on both sides of a change may fail, a
//! retired key gets 401 once the change has been applied, and a broken
//! config is refused whole while the previous one keeps serving.
//!
//! What counts as a failure, for a request whose expectation is `Pass`
//! (the key is valid before and after the change): anything but the
//! upstream's 200 — a 401/403, a 5xx, a connection refused, or a request
//! that was written and got no (complete) response. Reconnecting is not a
//! failure when the previous response said `connection: close` (Envoy's
//! drain of an old listener filter chain does that) or when the server had
//! already closed the idle connection before the request was written (a
//! client can see that without sending anything); every reconnect is counted.
//! A key whose validity changes (the retired old key) may get either answer
//! only while the change is in flight; once it has been applied it must
//! get exactly the new one (401), and a key that is never valid (the next
//! key, only in broken configs) must always get 401.
//!
//! When a change "has been applied" is read from Envoy's stats, never from
//! a sleep. ECDS: `config_reload` counts an update only after every worker
//! holds it, and it applies to the next request on every existing
//! connection. LDS: a listener update is an in-place filter-chain update;
//! new connections get the new chain as soon as it has warmed, existing
//! ones keep the old chain until they are drained (Envoy runs with
//! `--drain-strategy immediate`, so each gets `connection: close` on its
//! next response, and `--drain-time-s 1`), and the update is complete once
//! `listener_manager.total_filter_chains_draining` is back to 0. Only then
//! does the load move to the new key, the way an operator waits for a
//! rollout before moving clients.

use crate::ecds;
use crate::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OLD: &str = "e2e_reload_old_key_0123456789abcdefghij";
const NEW: &str = "e2e_reload_new_key_0123456789abcdefghij";
/// Only ever in broken configs: must never be accepted.
const NEXT: &str = "e2e_reload_next_key_0123456789abcdefghi";

/// Load generator threads. Each waits on the network most of the time (a
/// proxied request takes ~40 ms: the echo upstream writes headers and body
/// separately, and Nagle meets delayed ACKs), so this is little CPU.
const THREADS: usize = 8;
/// Requests every steady phase runs for, at least.
const STEADY: u64 = 300;

// ---------------------------------------------------------------- configs

#[derive(Clone, Copy, PartialEq)]
enum Retire {
    Revoke,
    Remove,
}

fn key_entry(id: &str, key: &str, revoked: bool) -> String {
    format!(
        r#"{{ "id": "{id}", "client": "billing", "sha256": "{}"{} }}"#,
        sha256_hex(key.as_bytes()),
        if revoked { r#", "revoked": true"# } else { "" }
    )
}

fn plugin_config(keys: &[String], allow_clients: &str) -> String {
    format!(
        r#"{{
  "routes": [
    {{ "name": "health", "path": "/healthz", "auth": "none" }},
    {{ "name": "api", "prefix": "/api", "auth": "private", "allow_clients": [{allow_clients}] }}
  ],
  "keys": [
    {}
  ]
}}"#,
        keys.join(",\n    ")
    )
}

/// The configurations of one rotation, in order.
struct Rotation {
    initial: String,
    overlap: String,
    retired: String,
    /// (what is wrong, config, the error line the filter must log)
    broken: Vec<(&'static str, String, String)>,
}

fn rotation(retire: Retire) -> Rotation {
    let old = key_entry("billing-old", OLD, false);
    let new = key_entry("billing-new", NEW, false);
    let billing = r#""billing""#;
    let retired_keys = match retire {
        Retire::Revoke => vec![key_entry("billing-old", OLD, true), new.clone()],
        Retire::Remove => vec![new.clone()],
    };
    // Each broken config is the retired one plus a next key (with a digest
    // used nowhere else) and one mistake: it must be refused whole, so the
    // next key never passes either.
    let n = retired_keys.len();
    let next = key_entry("billing-next", NEXT, false);
    let with = |entry: String, allow: &str| {
        let mut keys = retired_keys.clone();
        keys.push(entry);
        plugin_config(&keys, allow)
    };
    let unknown = next.replace(" }", r#", "owner": "ops" }"#);
    let digest = sha256_hex(NEXT.as_bytes());
    let bad_hex = next.replace(&digest, &format!("zz{}", &digest[2..]));
    Rotation {
        initial: plugin_config(std::slice::from_ref(&old), billing),
        overlap: plugin_config(&[old, new], billing),
        retired: plugin_config(&retired_keys, billing),
        broken: vec![
            (
                "unknown field",
                with(unknown, billing),
                format!("invalid configuration: $.keys[{n}].owner: unknown field"),
            ),
            (
                "bad hex digest",
                with(bad_hex, billing),
                format!("invalid configuration: $.keys[{n}].sha256: must be 64 hex digits"),
            ),
            (
                "allow_clients names a client that holds no key",
                with(next, r#""billing", "nobody""#),
                "invalid configuration: $.routes[1].allow_clients[1]: names a client that holds no key"
                    .into(),
            ),
        ],
    }
}

// ----------------------------------------------------------------- load

/// What a request with a given key must get in a phase.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// The upstream's 200: the key is valid on both sides of the change.
    Pass,
    /// 401: the key is invalid on both sides.
    Deny,
    /// 200 or 401: the key's validity is changing and the change is on its
    /// way to the connections.
    Either,
}

struct Phase {
    name: String,
    /// Sent round robin: (label, key, expectation).
    mix: Vec<(&'static str, &'static str, Expect)>,
    /// For a phase with a config change in flight: the (label, passed)
    /// outcome every client must have seen before the change counts as
    /// applied to all its connections (`Load::wait_observed`).
    watch: Option<(&'static str, bool)>,
}

#[derive(Default, Clone)]
struct Count {
    sent: u64,
    passed: u64,
    denied: u64,
    failed: u64,
}

#[derive(Default)]
struct Tally {
    /// By key label.
    keys: Vec<(&'static str, Count)>,
    reconnects: u64,
}

impl Tally {
    fn count(&mut self, label: &'static str) -> &mut Count {
        let at = match self.keys.iter().position(|(l, _)| *l == label) {
            Some(at) => at,
            None => {
                self.keys.push((label, Count::default()));
                self.keys.len() - 1
            }
        };
        &mut self.keys[at].1
    }
}

struct Shared {
    phases: Vec<Phase>,
    current: AtomicUsize,
    stop: AtomicBool,
    done: Vec<AtomicU64>,
    tallies: Mutex<Vec<Tally>>,
    failures: Mutex<Vec<String>>,
    /// When each phase began (phase index, instant).
    marks: Mutex<Vec<(usize, Instant)>>,
    /// Per client: the phase of the request it is sending (usize::MAX
    /// before its first).
    working: Vec<AtomicUsize>,
    /// Per phase: a bit per client that has seen the phase's `watch`.
    observed: Vec<AtomicU64>,
}

/// Load generator: `THREADS` clients, one keep-alive connection each.
struct Load {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// How one request went.
enum Outcome {
    Status(u16, bool),
    NoResponse(String),
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    port: u16,
    conn: Option<TcpStream>,
    /// Whether a connection was ever opened.
    connected: bool,
}

impl Client {
    /// Whether the server has closed (or reset) the idle connection; a
    /// client can tell without writing anything.
    fn closed_by_server(s: &TcpStream) -> bool {
        if s.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let closed = match s.peek(&mut b) {
            Ok(_) => true, // EOF, or bytes nobody asked for
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        };
        closed || s.set_nonblocking(false).is_err()
    }

    /// Sends one request; returns whether the client had to open a new
    /// connection (after `connection: close`, or a server-side close seen
    /// before writing) first.
    fn request(&mut self, key: &str) -> (bool, Outcome) {
        if self.conn.as_ref().is_some_and(Client::closed_by_server) {
            self.conn = None;
        }
        let mut reconnected = false;
        if self.conn.is_none() {
            reconnected = self.connected;
            match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let _ = s.set_nodelay(true);
                    self.conn = Some(s);
                    self.connected = true;
                }
                Err(e) => return (reconnected, Outcome::NoResponse(format!("connect: {e}"))),
            }
        }
        let s = self.conn.as_mut().unwrap();
        let req =
            format!("GET /api/v1/x HTTP/1.1\r\nhost: localhost\r\nnected-api-key: {key}\r\n\r\n");
        let outcome = match s.write_all(req.as_bytes()) {
            Ok(()) => read_response(s),
            Err(e) => Err(format!("write: {e}")),
        };
        match outcome {
            Ok((status, close, upstream)) => {
                if close {
                    self.conn = None;
                }
                (reconnected, Outcome::Status(status, upstream))
            }
            Err(e) => {
                self.conn = None;
                (reconnected, Outcome::NoResponse(e))
            }
        }
    }
}

/// Reads one response: (status, `connection: close`, the upstream's body).
fn read_response(s: &mut TcpStream) -> Result<(u16, bool, bool), String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line: {head:?}"))?;
            let header = |name: &str| {
                head.split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.trim() == name)
                    .map(|(_, v)| v.trim().to_owned())
            };
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no content-length: {head:?}"))?;
            let close = header("connection").is_some_and(|v| v == "close");
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).map_err(|e| format!("body: {e}"))?;
                if n == 0 {
                    return Err("closed in the body".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let upstream = buf[end + 4..].starts_with(b"{\"method\"");
            return Ok((status, close, upstream));
        }
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("closed after {} bytes of response", buf.len()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

impl Load {
    fn start(port: u16, phases: Vec<Phase>) -> Load {
        let shared = Arc::new(Shared {
            done: phases.iter().map(|_| AtomicU64::new(0)).collect(),
            observed: phases.iter().map(|_| AtomicU64::new(0)).collect(),
            phases,
            current: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            tallies: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            marks: Mutex::new(vec![(0, Instant::now())]),
            working: (0..THREADS).map(|_| AtomicUsize::new(usize::MAX)).collect(),
        });
        let threads = (0..THREADS)
            .map(|n| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || run(&shared, port, n))
            })
            .collect();
        Load { shared, threads }
    }

    fn phase(&self, name: &str) {
        let at = self
            .shared
            .phases
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no phase {name}"));
        self.shared.current.store(at, Ordering::SeqCst);
        self.shared.marks.lock().unwrap().push((at, Instant::now()));
        // A request a client began under the previous phase is judged by
        // that phase's expectations: wait until every client has finished
        // it, so that a config change that follows cannot meet it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .shared
            .working
            .iter()
            .any(|w| w.load(Ordering::SeqCst) != at)
        {
            assert!(Instant::now() < deadline, "a client stalled before {name}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until every client has seen the current phase's `watch`
    /// outcome on its connection: Envoy counts an update as applied before
    /// every worker serves it, so the next phase's strict expectations
    /// start only once each connection has shown the change.
    fn wait_observed(&self) -> Duration {
        let started = Instant::now();
        let at = self.shared.current.load(Ordering::SeqCst);
        let all = (1u64 << THREADS) - 1;
        let deadline = started + Duration::from_secs(20);
        while self.shared.observed[at].load(Ordering::SeqCst) != all {
            assert!(
                Instant::now() < deadline,
                "not every connection saw the change in phase {}",
                self.shared.phases[at].name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        started.elapsed()
    }

    /// Waits until the current phase has completed `n` requests.
    fn wait_requests(&self, n: u64) {
        let at = self.shared.current.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.shared.done[at].load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the load stalled in phase {}",
                self.shared.phases[at].name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; prints the requests per phase; returns the
    /// tallies by phase name and the failures.
    fn finish(self, variant: &str) -> (Vec<(String, Tally)>, Vec<String>) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let mut marks = self.shared.marks.lock().unwrap().clone();
        marks.push((usize::MAX, Instant::now()));
        let mut took = vec![Duration::ZERO; self.shared.phases.len()];
        for w in marks.windows(2) {
            took[w[0].0] += w[1].1 - w[0].1;
        }
        let per_thread = std::mem::take(&mut *self.shared.tallies.lock().unwrap());
        let mut phases: Vec<Tally> = self
            .shared
            .phases
            .iter()
            .map(|_| Tally::default())
            .collect();
        for (i, t) in per_thread.into_iter().enumerate() {
            let phase = &mut phases[i % self.shared.phases.len()];
            phase.reconnects += t.reconnects;
            for (label, c) in t.keys {
                let sum = phase.count(label);
                sum.sent += c.sent;
                sum.passed += c.passed;
                sum.denied += c.denied;
                sum.failed += c.failed;
            }
        }
        let mut total = Count::default();
        eprintln!("{variant}: requests per phase ({THREADS} keep-alive clients)");
        for ((p, t), took) in self.shared.phases.iter().zip(&phases).zip(&took) {
            let keys: Vec<String> = t
                .keys
                .iter()
                .map(|(label, c)| {
                    total.sent += c.sent;
                    total.failed += c.failed;
                    format!(
                        "{label}: {} sent, {} passed, {} denied 401, {} failed",
                        c.sent, c.passed, c.denied, c.failed
                    )
                })
                .collect();
            eprintln!(
                "  {} ({} ms): {}; reconnects {}",
                p.name,
                took.as_millis(),
                keys.join("; "),
                t.reconnects
            );
        }
        eprintln!(
            "{variant}: {} requests, {} failed",
            total.sent, total.failed
        );
        let failures = std::mem::take(&mut *self.shared.failures.lock().unwrap());
        let names = self.shared.phases.iter().map(|p| p.name.clone());
        (names.zip(phases).collect(), failures)
    }
}

/// One client thread: its tallies are stored per phase, in phase order.
fn run(shared: &Shared, port: u16, n: usize) {
    let mut client = Client {
        port,
        conn: None,
        connected: false,
    };
    let mut tallies: Vec<Tally> = shared.phases.iter().map(|_| Tally::default()).collect();
    let mut turn = n;
    while !shared.stop.load(Ordering::SeqCst) {
        let at = shared.current.load(Ordering::SeqCst);
        shared.working[n].store(at, Ordering::SeqCst);
        let phase = &shared.phases[at];
        let (label, key, expect) = phase.mix[turn % phase.mix.len()];
        turn += 1;
        let (reconnected, outcome) = client.request(key);
        let tally = &mut tallies[at];
        tally.reconnects += u64::from(reconnected);
        let count = tally.count(label);
        count.sent += 1;
        let ok = match &outcome {
            Outcome::Status(200, true) => {
                count.passed += 1;
                expect != Expect::Deny
            }
            Outcome::Status(401, false) => {
                count.denied += 1;
                expect != Expect::Pass
            }
            _ => false,
        };
        if !ok {
            count.failed += 1;
            let what = match &outcome {
                Outcome::Status(s, upstream) => format!("status {s} (upstream: {upstream})"),
                Outcome::NoResponse(e) => format!("no response: {e}"),
            };
            let mut failures = shared.failures.lock().unwrap();
            if failures.len() < 20 {
                failures.push(format!("{}: {label} ({expect:?}): {what}", phase.name));
            }
        }
        if let (Some((watch, passed)), Outcome::Status(status, _)) = (phase.watch, &outcome) {
            if watch == label && (*status == 200) == passed {
                shared.observed[at].fetch_or(1 << n, Ordering::SeqCst);
            }
        }
        shared.done[at].fetch_add(1, Ordering::SeqCst);
    }
    // Keep phase order: thread n's tallies land at n * phases + i.
    shared.tallies.lock().unwrap().extend(tallies);
}

// ------------------------------------------------------------ scenario

/// The phases every variant runs, by name.
const STEADY_OLD: &str = "0 old key only";
const ADDING: &str = "1 adding the new key (update in flight)";
const OVERLAP: &str = "1 overlap: both keys";
const MOVED: &str = "2 load moved to the new key";
const RETIRING: &str = "2 retiring the old key (update in flight)";
const RETIRED: &str = "2 old key retired";

fn phases(broken: &[(&'static str, String, String)]) -> Vec<Phase> {
    use Expect::*;
    let p = |name: &str, mix: Vec<(&'static str, &'static str, Expect)>| Phase {
        name: name.to_owned(),
        mix,
        watch: None,
    };
    let watching = |phase: Phase, label, passed| Phase {
        watch: Some((label, passed)),
        ..phase
    };
    let after_retire = vec![
        ("new", NEW, Pass),
        ("new", NEW, Pass),
        ("old", OLD, Deny),
        ("next", NEXT, Deny),
    ];
    let mut phases = vec![
        p(STEADY_OLD, vec![("old", OLD, Pass), ("new", NEW, Deny)]),
        // The new key is on its way: each connection must show it passing.
        watching(
            p(ADDING, vec![("old", OLD, Pass), ("new", NEW, Either)]),
            "new",
            true,
        ),
        p(OVERLAP, vec![("old", OLD, Pass), ("new", NEW, Pass)]),
        p(MOVED, vec![("new", NEW, Pass)]),
        // A client that was not moved keeps trying the old key.
        watching(
            p(
                RETIRING,
                vec![("new", NEW, Pass), ("new", NEW, Pass), ("old", OLD, Either)],
            ),
            "old",
            false,
        ),
        p(RETIRED, after_retire.clone()),
    ];
    for (what, _, _) in broken {
        phases.push(p(&format!("3 broken: {what}"), after_retire.clone()));
    }
    phases
}

/// How a variant publishes a config and tells when it has been applied.
trait Source {
    fn envoy(&self) -> &Envoy;
    /// Publishes a config that must be accepted; returns once it serves
    /// every connection.
    fn apply(&mut self, config: &str, t: &mut Cases) -> Duration;
    /// Publishes a config that must be refused; returns once it was.
    fn refuse(&mut self, config: &str, t: &mut Cases) -> Duration;
    /// The config-source stats, for the report.
    fn stats(&self) -> String;
}

fn stat_names(envoy: &Envoy, filter: &str) -> String {
    let r = envoy.admin_get(&format!("/stats?filter={filter}")).unwrap();
    r.body_str().lines().collect::<Vec<_>>().join(", ")
}

/// Waits until a gauge is exactly `value`.
fn wait_gauge(envoy: &Envoy, name: &str, value: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if envoy.stat(name) == value {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn rotate_under_load(variant: &str, source: &mut dyn Source, rotation: &Rotation) {
    let started = Instant::now();
    let mut t = Cases::default();
    let port = source.envoy().port();
    let load = Load::start(port, phases(&rotation.broken));
    let mut timings = Vec::new();

    load.phase(STEADY_OLD);
    load.wait_requests(STEADY);

    // 1. Add the new key for the same client.
    load.phase(ADDING);
    timings.push(("add key", source.apply(&rotation.overlap, &mut t)));
    timings.push(("add key seen on every connection", load.wait_observed()));
    load.phase(OVERLAP);
    load.wait_requests(STEADY);

    // 2. Move the load to the new key, then retire the old one.
    load.phase(MOVED);
    load.wait_requests(STEADY);
    load.phase(RETIRING);
    timings.push(("retire old key", source.apply(&rotation.retired, &mut t)));
    timings.push(("retirement seen on every connection", load.wait_observed()));
    load.phase(RETIRED);
    load.wait_requests(STEADY);

    // 3. Broken configs: refused, the retired config keeps serving.
    let log_before = source.envoy().log().len();
    for (what, config, line) in &rotation.broken {
        load.phase(&format!("3 broken: {what}"));
        timings.push((what, source.refuse(config, &mut t)));
        t.check(
            &format!("{variant}: the refusal of `{what}` names the JSON path"),
            source.envoy().log().contains(line.as_str()),
            line,
        );
        load.wait_requests(STEADY);
    }
    let (phases, failures) = load.finish(variant);
    eprintln!("{variant} stats: {}", source.stats());

    let envoy = source.envoy();
    let log = envoy.log();
    let new_lines = &log[log_before.min(log.len())..];
    for (key, name) in [(OLD, "old"), (NEW, "new"), (NEXT, "next")] {
        let digest = sha256_hex(key.as_bytes());
        t.check(
            &format!("{variant}: the {name} key's digest never appears in the log"),
            !log.contains(&digest[2..]) && !log.contains(key),
            name,
        );
    }
    t.check(
        &format!("{variant}: the refusals do not echo the configuration"),
        !new_lines.contains("\"routes\"")
            && !new_lines.contains("nobody")
            && !new_lines.contains("\"ops\""),
        "config text in the log",
    );
    t.check(
        &format!("{variant}: zero failed requests"),
        failures.is_empty(),
        &failures,
    );
    // Every change happened under load.
    for (name, tally) in &phases {
        t.check(
            &format!("{variant}: phase {name} ran under load"),
            tally.keys.iter().map(|(_, c)| c.sent).sum::<u64>() > 0,
            name,
        );
    }
    let denied = |phase: &str, label: &str| {
        phases
            .iter()
            .filter(|(name, _)| name == phase)
            .flat_map(|(_, t)| &t.keys)
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, c)| c.denied)
    };
    t.check(
        &format!("{variant}: the retired old key got 401 under load"),
        denied(RETIRED, "old") > 0,
        denied(RETIRED, "old"),
    );
    eprintln!(
        "{variant}: applied in {}; whole scenario {:.1} s",
        timings
            .iter()
            .map(|(what, d)| format!("{what} {} ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs_f64()
    );
    t.finish();
}

// ----------------------------------------------------------------- LDS

const LDS_SUCCESS: &str = "listener_manager.lds.update_success";
const LDS_REJECTED: &str = "listener_manager.lds.update_rejected";
const DRAINING: &str = "listener_manager.total_filter_chains_draining";
const IN_PLACE: &str = "listener_manager.listener_in_place_updated";
const ACTIVE: &str = "listener_manager.total_listeners_active";
const WARMING: &str = "listener_manager.total_listeners_warming";

/// The listener resource file for file-based LDS.
fn lds_resource(plugin_config: &str) -> String {
    format!(
        r#"resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: main
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: main
        normalize_path: true
        merge_slashes: true
        path_with_escaped_slashes_action: REJECT_REQUEST
        route_config:
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
            - match: {{ prefix: "/" }}
              route: {{ cluster: echo }}
        http_filters:
{}"#,
        http_filters(8, "FAIL_RELOAD", "{{WASM}}", plugin_config)
    )
}

const LDS_BOOTSTRAP: &str = r#"node: { id: e2e-lds, cluster: e2e-lds }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
dynamic_resources:
  lds_config:
    resource_api_version: V3
    path_config_source:
      path: {{DIR}}/lds/listeners.yaml
      watched_directory: { path: {{DIR}}/lds }
static_resources:
  clusters:
  - name: echo
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: { socket_address: { address: 127.0.0.1, port_value: {{UPSTREAM}} } }
"#;

/// Envoy flags for a quick, immediate drain of replaced filter chains.
fn drain_args(mut setup: Setup) -> Setup {
    setup.log_args.extend(
        ["--drain-strategy", "immediate", "--drain-time-s", "1"]
            .iter()
            .map(|s| s.to_string()),
    );
    setup.concurrency = 2;
    setup
}

struct Lds {
    envoy: Envoy,
    successes: u64,
    rejections: u64,
}

impl Lds {
    fn publish(&self, plugin_config: &str) {
        let content = substitute(
            &lds_resource(plugin_config),
            0,
            &wasm_file(),
            &self.envoy.dir,
        );
        let tmp = self.envoy.dir.join("lds/.listeners.yaml.tmp");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.envoy.dir.join("lds/listeners.yaml")).unwrap();
    }
}

/// Probes fresh connections until one gets `status` for `key`.
fn probe(envoy: &Envoy, key: &str, status: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if envoy.send(Req::get("/api/v1/probe").key(key)).status == status {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

impl Source for Lds {
    fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    fn apply(&mut self, config: &str, t: &mut Cases) -> Duration {
        let started = Instant::now();
        self.publish(config);
        self.successes += 1;
        t.check(
            "LDS update accepted",
            self.envoy.wait_stat(LDS_SUCCESS, self.successes),
            stat_names(&self.envoy, "listener_manager"),
        );
        // New connections get the new filter chain once it has warmed
        // (probe: the key whose validity changes). Envoy raises the
        // draining gauge in the same main-thread step that hands the new
        // chain to the workers, and lowers it once every worker has dropped
        // the old chain (after --drain-time-s): back at 0, every
        // connection runs the new config.
        let (key, status) = if config.contains(r#""revoked": true"#) {
            (OLD, 401)
        } else {
            (NEW, 200)
        };
        t.check(
            "LDS: new connections get the new config",
            probe(&self.envoy, key, status),
            status,
        );
        t.check(
            "LDS: the old filter chain drained",
            wait_gauge(&self.envoy, DRAINING, 0),
            self.envoy.stat(DRAINING),
        );
        t.check(
            "LDS: one active listener, none warming",
            self.envoy.stat(ACTIVE) == 1 && self.envoy.stat(WARMING) == 0,
            self.stats(),
        );
        t.check(
            "LDS: no update rejected",
            self.envoy.stat(LDS_REJECTED) == self.rejections,
            self.envoy.stat(LDS_REJECTED),
        );
        started.elapsed()
    }

    fn stats(&self) -> String {
        stat_names(&self.envoy, "^listener_manager\\.(lds|listener_|total_)")
    }

    fn refuse(&mut self, config: &str, t: &mut Cases) -> Duration {
        let started = Instant::now();
        self.publish(config);
        self.rejections += 1;
        t.check(
            "LDS update rejected",
            self.envoy.wait_stat(LDS_REJECTED, self.rejections),
            stat_names(&self.envoy, "listener_manager.lds"),
        );
        t.check(
            "LDS: a rejected update counts no success",
            self.envoy.stat(LDS_SUCCESS) == self.successes,
            self.envoy.stat(LDS_SUCCESS),
        );
        started.elapsed()
    }
}

#[test]
fn lds_key_rotation_under_load_fails_no_request() {
    let rotation = rotation(Retire::Revoke);
    let mut setup = drain_args(Setup::new(""));
    setup.bootstrap = Some(LDS_BOOTSTRAP.into());
    setup.files = vec![("lds/listeners.yaml".into(), lds_resource(&rotation.initial))];
    let envoy = Envoy::start("reload-lds", setup);
    let port = envoy.port();
    let mut lds = Lds {
        envoy,
        successes: 1,
        rejections: 0,
    };
    assert!(lds.envoy.wait_stat(LDS_SUCCESS, 1));
    rotate_under_load("LDS", &mut lds, &rotation);
    let envoy = &lds.envoy;
    let mut t = Cases::default();
    t.check(
        "LDS: both accepted updates were in-place filter-chain updates",
        envoy.stat(IN_PLACE) == 2,
        envoy.stat(IN_PLACE),
    );
    let r = envoy.admin_get("/listeners?format=json").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let now = &v["listener_statuses"][0]["local_address"]["socket_address"]["port_value"];
    t.check(
        "LDS: the listener kept its port",
        now.as_u64() == Some(u64::from(port)),
        (port, now),
    );
    t.finish();
}

// ---------------------------------------------------------------- ECDS

/// The ECDS file subscription's own counters (next to `config_reload` and
/// `config_fail`).
const ECDS_SUCCESS: &str = "extension_config_discovery.http_filter.nected_key_auth.update_success";
const ECDS_REJECTED: &str =
    "extension_config_discovery.http_filter.nected_key_auth.update_rejected";

struct Ecds {
    envoy: Envoy,
    reloads: u64,
    successes: u64,
    rejections: u64,
}

impl Source for Ecds {
    fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    fn apply(&mut self, config: &str, t: &mut Cases) -> Duration {
        let started = Instant::now();
        ecds::publish(&self.envoy.dir, &ecds::resource(&ecds::template(), config));
        self.reloads += 1;
        self.successes += 1;
        // `config_reload` counts an update once every worker holds it; the
        // next request on every connection uses it.
        t.check(
            "ECDS update applied",
            self.envoy.wait_stat(ecds::RELOADS, self.reloads),
            self.stats(),
        );
        t.check(
            "ECDS: update accepted, none rejected",
            self.envoy.stat(ECDS_SUCCESS) == self.successes
                && self.envoy.stat(ECDS_REJECTED) == self.rejections,
            self.stats(),
        );
        started.elapsed()
    }

    fn stats(&self) -> String {
        stat_names(&self.envoy, "^extension_config_discovery\\.")
    }

    fn refuse(&mut self, config: &str, t: &mut Cases) -> Duration {
        let started = Instant::now();
        ecds::publish(&self.envoy.dir, &ecds::resource(&ecds::template(), config));
        self.rejections += 1;
        t.check(
            "ECDS update rejected",
            self.envoy.wait_stat(ECDS_REJECTED, self.rejections),
            self.stats(),
        );
        t.check(
            "ECDS: the rejection is counted as config_fail, not as a success",
            self.envoy.stat(ecds::FAILS) == self.rejections
                && self.envoy.stat(ECDS_SUCCESS) == self.successes,
            self.stats(),
        );
        // Envoy 1.40 also counts a rejected update in `config_reload` (the
        // update's cleanup runs while the failure unwinds), so that counter
        // alone does not tell an applied update; the load shows that the
        // previous config keeps serving all the same.
        self.reloads = self.envoy.stat(ecds::RELOADS);
        started.elapsed()
    }
}

#[test]
fn ecds_key_rotation_under_load_fails_no_request() {
    let rotation = rotation(Retire::Remove);
    let setup = drain_args(ecds::setup(&rotation.initial));
    let envoy = Envoy::start("reload-ecds", setup);
    assert!(envoy.wait_stat(ecds::RELOADS, 1));
    let mut source = Ecds {
        envoy,
        reloads: 1,
        successes: 1,
        rejections: 0,
    };
    rotate_under_load("ECDS", &mut source, &rotation);
}
