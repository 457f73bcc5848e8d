//! The second host: nginx + ngx_wasm_module + Wasmtime (`make nginx-host`
//! builds it), running the shipped `deploy/kong/nginx.conf` with its ports,
//! paths, log and plugin configuration replaced. An echo upstream reports
//! what reached it; readiness is probed (the port answers and the filter
//! logged its `configured` line), never slept on. On failure, Drop prints
//! nginx's error log; nginx is always stopped.

#![allow(dead_code)]

use crate::harness::{raw, read_lossy, repo, wait_lines, wasm_file, Echo, Req, Response, Scratch};
use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx binary: `NGINX_BIN` (the Makefile exports it), else the
/// cached build of scripts/nginx/build-host.sh.
pub fn nginx_bin() -> PathBuf {
    let default = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/nected-key-auth/nginx-1.22.1-ngxwasm-3bed278-wasmtime-26.0.0/sbin/nginx");
    let path = std::env::var_os("NGINX_BIN")
        .map(PathBuf::from)
        .unwrap_or(default);
    assert!(
        path.is_file(),
        "{} not found (NGINX_BIN); run the end-to-end tests with `make test` (or `make e2e`), \
         which builds nginx + ngx_wasm_module once (`make nginx-host`)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The plugin configuration as an nginx single-quoted string's content.
pub fn quote(config: &str) -> String {
    // Compact (the inline limit is about 4 KiB), then nginx's escapes.
    let compact = serde_json::from_str::<serde_json::Value>(config)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| config.to_owned());
    compact.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The raw bytes nginx answers to `request` within `timeout`, if any.
pub fn request_with_timeout(port: u16, request: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.write_all(request).ok()?;
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) if !buf.is_empty() => Some(buf),
        _ => None,
    }
}

/// How to run nginx for a scenario.
#[derive(Clone)]
pub struct NgxSetup {
    pub plugin_config: String,
    /// The configuration text instead of the shipped one (same
    /// substitutions).
    pub conf: Option<String>,
    /// Extra directives for the `server {}` block.
    pub server_extra: String,
    pub wasm: PathBuf,
    /// Wait for the filter's `configured` line (off for a configuration
    /// the filter rejects).
    pub expect_configured: bool,
}

impl NgxSetup {
    pub fn new(plugin_config: impl Into<String>) -> NgxSetup {
        NgxSetup {
            plugin_config: plugin_config.into(),
            conf: None,
            server_extra: String::new(),
            wasm: wasm_file(),
            expect_configured: true,
        }
    }

    /// `underscores_in_headers on`: `_` spellings reach the filter.
    pub fn underscores(mut self) -> NgxSetup {
        self.server_extra
            .push_str("        underscores_in_headers on;\n");
        self
    }
}

/// The shipped nginx.conf for this scenario.
pub fn render(setup: &NgxSetup, port: u16, upstream: u16, dir: &std::path::Path) -> String {
    let template = setup
        .conf
        .clone()
        .unwrap_or_else(|| crate::harness::read("deploy/kong/nginx.conf"));
    let start = template
        .find("proxy_wasm nected_key_auth '")
        .expect("the conf runs the filter")
        + "proxy_wasm nected_key_auth '".len();
    let end = start + template[start..].find("';").expect("config is closed");
    let mut conf = format!(
        "{}{}{}",
        &template[..start],
        quote(&setup.plugin_config),
        &template[end..]
    );
    conf = conf
        .replace(
            "listen 127.0.0.1:8000;",
            &format!("listen 127.0.0.1:{port};\n{}", setup.server_extra),
        )
        .replace(
            "server 127.0.0.1:18080;",
            &format!("server 127.0.0.1:{upstream};"),
        )
        .replace(
            "target/wasm32-wasip1/release/nected_key_auth.wasm",
            &setup.wasm.display().to_string(),
        )
        .replace(
            "pid /tmp/nected-key-auth-nginx.pid;",
            &format!("pid {}/nginx.pid;", dir.display()),
        )
        .replace(
            "error_log stderr info;",
            &format!("error_log {}/error.log debug;", dir.display()),
        );
    conf
}

/// A running nginx (master + one worker) with the filter.
pub struct Nginx {
    child: Child,
    _echo: Echo,
    pub dir: PathBuf,
    pub port: u16,
    scratch: Option<Scratch>,
}

impl Nginx {
    pub fn start(name: &str, setup: NgxSetup) -> Nginx {
        // A port picked free can be taken before nginx binds it (tests run
        // in parallel): try again with another.
        let mut last = String::new();
        for _ in 0..3 {
            match Nginx::try_start(name, setup.clone()) {
                Ok(n) => return n,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("nginx did not start:\n{log}"),
            }
        }
        panic!("nginx did not start:\n{last}")
    }

    pub fn try_start(name: &str, setup: NgxSetup) -> Result<Nginx, String> {
        let scratch = Scratch::new(name);
        let dir = scratch.0.clone();
        let echo = Echo::start();
        let port = free_port();
        std::fs::write(
            dir.join("nginx.conf"),
            render(&setup, port, echo.port, &dir),
        )
        .unwrap();
        std::fs::File::create(dir.join("error.log")).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .current_dir(repo())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ))
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            _echo: echo,
            dir,
            port,
            scratch: Some(scratch),
        };
        if let Err(e) = nginx.wait_ready(setup.expect_configured, 1) {
            // Keep the folder (conf, logs) for a look.
            std::mem::forget(nginx.scratch.take());
            return Err(format!("{e}\n(kept in {})", nginx.dir.display()));
        }
        Ok(nginx)
    }

    /// Waits until the port accepts connections and the filter logged its
    /// `configured` line `n` times in all (once per worker start).
    pub fn wait_ready(&mut self, configured: bool, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nginx exited ({status})\n{}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("timed out\n{}", self.log()));
            }
            let log = self.log();
            let ok = !configured || log.matches("] configured mode=").count() >= n;
            if ok && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the master (HUP: reload its configuration).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Writes a new nginx.conf (same ports and paths) for a reload.
    pub fn rewrite_conf(&self, setup: &NgxSetup, upstream: u16) {
        let conf = render(setup, self.port, upstream, &self.dir);
        let mut f = std::fs::File::create(self.dir.join("nginx.conf")).unwrap();
        f.write_all(conf.as_bytes()).unwrap();
    }

    pub fn upstream_port(&self) -> u16 {
        self._echo.port
    }

    /// nginx's error log (lossy: it may hold header bytes).
    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("error.log"))
    }

    /// The filter's own lines (ngx_wasm_module prefixes them `[wasm]`).
    pub fn filter_log(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("nected_key_auth"))
            .map(str::to_owned)
            .collect()
    }

    /// The filter's log once it holds `n` decision lines.
    pub fn wait_decisions(&self, n: usize) -> Vec<String> {
        wait_lines(|| self.filter_log(), "] outcome=", n)
    }

    pub fn raw(&self, request: &[u8]) -> Response {
        raw(self.port, request)
    }

    pub fn send(&self, req: Req) -> Response {
        raw(self.port, &req.bytes())
    }

    /// Whether a worker died on a signal (a crash) since start.
    pub fn crashed(&self) -> bool {
        self.log().contains("exited on signal")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers, then exits; KILL only if it
        // does not (workers of a killed master would keep the port).
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!(
                "---- nginx error log ({}), last {} lines ----",
                self.dir.display(),
                tail.len()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        drop(self.scratch.take());
    }
}
