//! The compiled policy: everything a request needs, built once per configure.

use crate::host::HostPattern;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use subtle::ConstantTimeEq;

/// Index into [`Policy::clients`].
pub type ClientId = u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Public: no key checked.
    None,
    /// A valid key is required.
    Private,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    /// Decide, count and log, but let every request through.
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

/// Where the request's host is read (`host_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFrom {
    /// `:authority`, or `host` where the host gives no `:authority`.
    Authority,
    /// The client's `host` header only (ngx_wasm_module builds
    /// `:authority` from nginx's `server_name`, not from the client).
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(Box<[u8]>),
    /// Whole segments: the prefix itself or the prefix followed by `/`.
    Prefix(Box<[u8]>),
    /// `prefix: "/"`.
    Everything,
}

impl PathMatch {
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Exact(p) => path == &**p,
            PathMatch::Prefix(p) => match path.strip_prefix(&**p) {
                Some(rest) => rest.is_empty() || rest.first() == Some(&b'/'),
                None => false,
            },
            PathMatch::Everything => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: Box<str>,
    /// The name as logs and filter state show it: quoted when it holds
    /// characters other than letters, digits and `._-()/:` (free text could
    /// blur the fields). Computed once, at configure time.
    pub log_name: Box<str>,
    pub matcher: PathMatch,
    /// Upper-case, with `HEAD` added where `GET` is listed; empty means
    /// any method.
    pub methods: Box<[Box<[u8]>]>,
    /// Empty means any host.
    pub hosts: Box<[HostPattern]>,
    pub auth: Auth,
    /// `None`: every client.
    pub allow_clients: Option<Box<[ClientId]>>,
}

impl Route {
    /// `Route::log_name` for a route name.
    pub fn log_name_of(name: &str) -> Box<str> {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-()/:".contains(&b));
        if plain {
            name.into()
        } else {
            format!("{name:?}").into()
        }
    }

    /// `method` as sent (compared upper-cased); `host` from `host::normalize`.
    pub fn matches(&self, path: &[u8], method: &[u8], host: &[u8]) -> bool {
        self.matcher.matches(path) && self.matches_method_host(method, host)
    }

    /// Methods and hosts only (the path was matched by the index).
    fn matches_method_host(&self, method: &[u8], host: &[u8]) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| method.eq_ignore_ascii_case(m)))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host)))
    }

    pub fn allows(&self, client: ClientId) -> bool {
        self.allow_clients
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&client))
    }
}

#[derive(Debug, Clone)]
pub struct Key {
    pub id: Box<str>,
    pub client: ClientId,
    pub revoked: bool,
    /// Unix nanoseconds; the key is valid in `[not_before, expires)`.
    pub not_before: Option<i128>,
    pub expires: Option<i128>,
}

/// Where a key stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Valid,
    Revoked,
    NotYetValid,
    Expired,
}

impl Key {
    pub fn has_time_bounds(&self) -> bool {
        self.not_before.is_some() || self.expires.is_some()
    }

    /// The key's state at `now`; without a clock, a time-bounded key is
    /// never valid.
    pub fn state(&self, now: Option<i128>) -> KeyState {
        if self.revoked {
            return KeyState::Revoked;
        }
        match now {
            Some(now) if self.not_before.is_some_and(|nb| now < nb) => KeyState::NotYetValid,
            Some(now) if self.expires.is_some_and(|ex| now >= ex) => KeyState::Expired,
            Some(_) => KeyState::Valid,
            None if self.not_before.is_some() => KeyState::NotYetValid,
            None if self.expires.is_some() => KeyState::Expired,
            None => KeyState::Valid,
        }
    }
}

/// Route lookup that does not grow with the route table: the routes of the
/// exact path and of each prefix of it are found in hash tables, then the
/// earliest whose methods and hosts match wins. Equivalent to trying the
/// routes in order.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    /// Path → route indices, ascending.
    exact: HashMap<Box<[u8]>, Box<[u32]>, PathHash>,
    /// Prefix → route indices, ascending.
    prefix: HashMap<Box<[u8]>, Box<[u32]>, PathHash>,
    /// `prefix: "/"` routes.
    everything: Box<[u32]>,
    /// The lengths of the prefixes, ascending, each once. Only leading
    /// parts of a path of these lengths are looked up: the work per request
    /// is one test per length (and one lookup per length that ends at a `/`),
    /// whatever the path's length.
    prefix_lengths: Box<[usize]>,
}

impl RouteIndex {
    pub fn new(routes: &[Route]) -> RouteIndex {
        let mut index = RouteIndex::default();
        let mut exact: HashMap<Box<[u8]>, Vec<u32>, PathHash> = HashMap::default();
        let mut prefix: HashMap<Box<[u8]>, Vec<u32>, PathHash> = HashMap::default();
        let mut everything = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let i = i as u32;
            match &route.matcher {
                PathMatch::Exact(p) => exact.entry(p.clone()).or_default().push(i),
                PathMatch::Prefix(p) => prefix.entry(p.clone()).or_default().push(i),
                PathMatch::Everything => everything.push(i),
            }
        }
        // Which lengths occur, then those lengths in order (a set type would
        // add 8 KB of code to the module for this one use).
        let longest = prefix.keys().map(|p| p.len()).max().unwrap_or(0);
        let mut seen = vec![false; longest + 1];
        for p in prefix.keys() {
            if let Some(slot) = seen.get_mut(p.len()) {
                *slot = true;
            }
        }
        let lengths: Vec<usize> = (0..=longest)
            .filter(|&n| seen.get(n) == Some(&true))
            .collect();
        index.exact = exact.into_iter().map(|(k, v)| (k, v.into())).collect();
        index.prefix = prefix.into_iter().map(|(k, v)| (k, v.into())).collect();
        index.everything = everything.into();
        index.prefix_lengths = lengths.into();
        index
    }

    /// The index of the first route that matches, as a scan in order would
    /// find it.
    pub fn find(&self, routes: &[Route], path: &[u8], method: &[u8], host: &[u8]) -> Option<usize> {
        let first = |ids: &[u32]| {
            ids.iter().copied().find(|&i| {
                routes
                    .get(i as usize)
                    .is_some_and(|r| r.matches_method_host(method, host))
            })
        };
        let mut best = first(&self.everything);
        let mut consider = |ids: Option<&Box<[u32]>>| {
            if let Some(i) = ids.and_then(|ids| first(ids)) {
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        };
        if !self.exact.is_empty() {
            consider(self.exact.get(path));
        }
        // Every leading part of a prefix's length that ends before a `/`,
        // and the whole path. (A prefix is at least 2 bytes: `/` alone is
        // `everything`.)
        for &n in self.prefix_lengths.iter() {
            match path.get(n) {
                Some(b'/') => consider(self.prefix.get(path.get(..n).unwrap_or_default())),
                Some(_) => {}
                None if n == path.len() => consider(self.prefix.get(path)),
                None => break,
            }
        }
        best.map(|i| i as usize)
    }
}

/// FNV-1a over the route paths. Not keyed: the table's keys come from the
/// configuration, so a request cannot lengthen a bucket; it only picks one.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathHash;

impl BuildHasher for PathHash {
    type Hasher = Fnv;

    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// The compiled configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Lower-case name of the key header.
    pub header: Box<str>,
    /// `ApiKey header="<header>"`.
    pub www_authenticate: Box<str>,
    pub default_auth: Auth,
    pub routes: Box<[Route]>,
    pub route_index: RouteIndex,
    pub keys: Box<[Key]>,
    pub clients: Box<[Box<str>]>,
    /// `(first 8 digest bytes, digest, index into keys)`, sorted by digest.
    pub by_digest: Box<[DigestEntry]>,
    pub strip_key: bool,
    /// Lower-case header name; `None` when turned off.
    pub forward_client: Option<Box<str>>,
    /// The header name lengths the request scan looks at
    /// (`decide::scan_lengths`).
    pub scan_lengths: u64,
    pub allow_cors_preflight: bool,
    pub require_tls: bool,
    /// Log the decision of requests that pass too (refusals always are);
    /// decided here, not per request.
    pub log_requests: bool,
    pub mode: Mode,
    pub host_from: HostFrom,
    /// First 12 hex characters of the SHA-256 of the configuration's
    /// canonical form (RFC 8785).
    pub fingerprint: String,
}

/// `(first 8 bytes of the digest, digest, index into `Policy::keys`)`.
pub type DigestEntry = (u64, [u8; 32], u32);

/// A digest as four words, so that the constant-time comparison (`subtle`,
/// one optimization barrier per element) costs 4 steps instead of 32.
fn words(digest: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(digest.chunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *word = u64::from_le_bytes(bytes);
    }
    out
}

/// The first 8 bytes of a digest, the search key of the digest table.
pub fn prefix64(digest: &[u8; 32]) -> u64 {
    let mut head = [0u8; 8];
    head.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_be_bytes(head)
}

impl Policy {
    /// The key whose digest is SHA-256(`value`). The table is searched by
    /// the first 8 digest bytes; each candidate is then confirmed over all 32
    /// bytes in constant time.
    pub fn lookup(&self, value: &[u8]) -> Option<&Key> {
        self.lookup_digest(&Sha256::digest(value).into())
    }

    /// The key with this digest (see [`Policy::lookup`]).
    pub fn lookup_digest(&self, digest: &[u8; 32]) -> Option<&Key> {
        let head = prefix64(digest);
        let start = self.by_digest.partition_point(|(p, _, _)| *p < head);
        self.by_digest
            .get(start..)?
            .iter()
            .take_while(|(p, _, _)| *p == head)
            .find(|(_, d, _)| bool::from(words(d).ct_eq(&words(digest))))
            .and_then(|&(_, _, index)| self.keys.get(index as usize))
    }

    pub fn client_name(&self, key: &Key) -> &str {
        self.clients.get(key.client as usize).map_or("", |c| c)
    }

    /// Counts for the configure log line and `nected-key check`.
    pub fn summary(&self, now: i128) -> Summary {
        const WEEK: i128 = 7 * 24 * 3600 * 1_000_000_000;
        let mut s = Summary {
            routes: self.routes.len(),
            keys: self.keys.len(),
            clients: self.clients.len(),
            ..Summary::default()
        };
        for key in self.keys.iter() {
            match key.state(Some(now)) {
                KeyState::Revoked => s.revoked += 1,
                KeyState::Expired => s.expired += 1,
                KeyState::NotYetValid => s.not_yet_valid += 1,
                KeyState::Valid => {}
            }
            if !key.revoked && key.expires.is_some_and(|ex| now < ex && ex - now <= WEEK) {
                s.expiring_7d += 1;
            }
        }
        s
    }
}

/// Counts of a policy at an instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub routes: usize,
    pub keys: usize,
    pub clients: usize,
    pub revoked: usize,
    pub expired: usize,
    pub not_yet_valid: usize,
    /// Not revoked, valid or not yet valid, and expiring within 7 days.
    pub expiring_7d: usize,
}

impl PathMatch {
    /// Whether every path this matcher accepts is accepted by `self`.
    fn covers(&self, other: &PathMatch) -> bool {
        match (self, other) {
            (PathMatch::Everything, _) => true,
            (_, PathMatch::Everything) => false,
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
            (PathMatch::Prefix(_), PathMatch::Exact(b) | PathMatch::Prefix(b)) => self.matches(b),
        }
    }
}

impl HostPattern {
    /// Whether every host `other` matches is matched by `self`.
    fn covers(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(_), HostPattern::Suffix(_)) => false,
            (HostPattern::Suffix(_), HostPattern::Exact(b)) => self.matches(b),
            // `*.b.example.com` is inside `*.example.com`.
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => b.ends_with(a),
        }
    }
}

impl Route {
    /// Whether every request `later` matches is matched by `self`.
    pub fn covers(&self, later: &Route) -> bool {
        let methods = self.methods.is_empty()
            || (!later.methods.is_empty()
                && later.methods.iter().all(|m| self.methods.contains(m)));
        let hosts = self.hosts.is_empty()
            || (!later.hosts.is_empty()
                && later
                    .hosts
                    .iter()
                    .all(|h| self.hosts.iter().any(|a| a.covers(h))));
        methods && hosts && self.matcher.covers(&later.matcher)
    }
}

impl Policy {
    /// Routes that can never match: `(index, index of the earlier route
    /// that matches every request it would)`.
    pub fn shadowed_routes(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, later) in self.routes.iter().enumerate() {
            if let Some(j) = self.routes.iter().take(i).position(|r| r.covers(later)) {
                out.push((i, j));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::compile;

    fn shadowed(routes: &str) -> Vec<(usize, usize)> {
        let config = format!(
            r#"{{"routes": {routes}, "keys": [{{"id": "c", "sha256": "{}"}}]}}"#,
            "ab".repeat(32)
        );
        compile(config.as_bytes()).unwrap().shadowed_routes()
    }

    /// The index finds what trying every route in order finds.
    #[test]
    fn route_index_equals_first_match_in_order() {
        let routes = r#"[
            {"name": "a", "path": "/api/v1/rules", "methods": ["POST"], "auth": "private"},
            {"name": "b", "prefix": "/api", "hosts": ["*.example.com"], "auth": "none"},
            {"name": "c", "prefix": "/api/v1", "auth": "private"},
            {"name": "d", "prefix": "/api/v1/rules", "methods": ["GET"], "auth": "none"},
            {"name": "e", "path": "/api/v1/rules", "auth": "none"},
            {"name": "f", "prefix": "/", "hosts": ["only.test"], "auth": "none"},
            {"name": "g", "prefix": "/docs", "auth": "none"},
            {"name": "h", "prefix": "/api/v1", "methods": ["DELETE"], "auth": "none"},
            {"name": "i", "path": "/", "auth": "none"},
            {"name": "j", "prefix": "/a%3Ab", "auth": "private"}
        ]"#;
        let config = format!(
            r#"{{"routes": {routes}, "keys": [{{"id": "c", "sha256": "{}"}}]}}"#,
            "ab".repeat(32)
        );
        let policy = compile(config.as_bytes()).unwrap();
        let paths = [
            "/",
            "/api",
            "/api/",
            "/apix",
            "/api/v1",
            "/api/v1/",
            "/api/v1/rules",
            "/api/v1/rules/x",
            "/api/v1/rulesx",
            "/api/v2",
            "/docs",
            "/docs/a/b",
            "/docsx",
            "/a:b",
            "/a:b/c",
            "/x/y/z",
            "/api/v1/rules/a/b/c/d/e/f/g",
        ];
        let mut checked = 0;
        for path in paths {
            let path = crate::path::match_key(path.as_bytes());
            for method in ["GET", "HEAD", "POST", "DELETE", "get"] {
                for host in ["api.example.com", "example.com", "only.test", "other"] {
                    let (m, h) = (method.as_bytes(), host.as_bytes());
                    let linear = policy.routes.iter().position(|r| r.matches(&path, m, h));
                    let indexed = policy.route_index.find(&policy.routes, &path, m, h);
                    assert_eq!(indexed, linear, "{path:?} {method} {host}");
                    checked += usize::from(linear.is_some());
                }
            }
        }
        assert!(checked > 100, "the table exercises matches ({checked})");
    }

    #[test]
    fn shadowing_table() {
        type Case = (&'static str, &'static str, Vec<(usize, usize)>);
        let cases: &[Case] = &[
            (
                "prefix / shadows everything after it",
                r#"[{"name":"a","prefix":"/","auth":"none"},{"name":"b","path":"/x","auth":"private"}]"#,
                vec![(1, 0)],
            ),
            (
                "a prefix shadows a deeper prefix",
                r#"[{"name":"a","prefix":"/api","auth":"none"},{"name":"b","prefix":"/api/v1","auth":"private"}]"#,
                vec![(1, 0)],
            ),
            (
                "a prefix shadows its own exact path",
                r#"[{"name":"a","prefix":"/api","auth":"none"},{"name":"b","path":"/api","auth":"private"}]"#,
                vec![(1, 0)],
            ),
            (
                "segments: /api does not shadow /apix",
                r#"[{"name":"a","prefix":"/api","auth":"none"},{"name":"b","prefix":"/apix","auth":"private"}]"#,
                vec![],
            ),
            (
                "exact does not shadow a prefix",
                r#"[{"name":"a","path":"/api","auth":"none"},{"name":"b","prefix":"/api","auth":"private"}]"#,
                vec![],
            ),
            (
                "same exact path",
                r#"[{"name":"a","path":"/api","auth":"none"},{"name":"b","path":"/api","auth":"private"}]"#,
                vec![(1, 0)],
            ),
            (
                "method-limited earlier route does not shadow an any-method route",
                r#"[{"name":"a","prefix":"/","methods":["GET"],"auth":"none"},{"name":"b","prefix":"/x","auth":"private"}]"#,
                vec![],
            ),
            (
                "GET covers HEAD",
                r#"[{"name":"a","prefix":"/","methods":["GET"],"auth":"none"},{"name":"b","prefix":"/x","methods":["HEAD"],"auth":"private"}]"#,
                vec![(1, 0)],
            ),
            (
                "HEAD does not cover GET",
                r#"[{"name":"a","prefix":"/","methods":["HEAD"],"auth":"none"},{"name":"b","prefix":"/x","methods":["GET"],"auth":"private"}]"#,
                vec![],
            ),
            (
                "host-limited earlier route does not shadow an any-host route",
                r#"[{"name":"a","prefix":"/","hosts":["a.example.com"],"auth":"none"},{"name":"b","prefix":"/x","auth":"private"}]"#,
                vec![],
            ),
            (
                "wildcard covers a host and a deeper wildcard, not the bare domain",
                r#"[{"name":"a","prefix":"/","hosts":["*.example.com"],"auth":"none"},
                 {"name":"b","prefix":"/x","hosts":["a.example.com","*.b.example.com"],"auth":"private"},
                 {"name":"c","prefix":"/x","hosts":["example.com"],"auth":"private"}]"#,
                vec![(1, 0)],
            ),
        ];
        for (name, routes, want) in cases {
            assert_eq!(&shadowed(routes), want, "{name}");
        }
    }
}
