//! The decision for one request: a pure function of the compiled policy, the
//! request headers and two facts asked of the host only when needed (the
//! wall clock and whether the connection is TLS).

use crate::config::{fold_eq, MAX_KEY_LEN};
use crate::host;
use crate::path::{self, PathError};
use crate::policy::{Auth, HostFrom, Key, KeyState, Mode, Policy, Route};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// What the decision may ask of the host, lazily.
pub trait Env {
    /// Wall clock, Unix nanoseconds; `None` when the host cannot tell.
    fn now(&self) -> Option<i128>;
    /// Whether the request reached the gateway over TLS.
    fn is_tls(&self) -> bool;
    /// Whether another live configuration of the same filter in this VM
    /// marks the key with this SHA-256 digest `revoked` (see
    /// [`crate::revocation`]). Asked only for a key this configuration
    /// holds as valid; a lookup, not a host call.
    fn revoked_elsewhere(&self, _digest: &[u8; 32]) -> bool {
        false
    }
}

/// The outcome of a request; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Public,
    Allowed,
    DeniedMissing,
    DeniedInvalid,
    DeniedForbidden,
    DeniedBadRequest,
    DeniedTls,
    DeniedConfig,
}

impl Outcome {
    /// Every outcome but `public` and `allowed` (in `report` mode too,
    /// where the request still goes through).
    pub fn refused(self) -> bool {
        !matches!(self, Outcome::Public | Outcome::Allowed)
    }

    pub const ALL: [Outcome; 8] = [
        Outcome::Public,
        Outcome::Allowed,
        Outcome::DeniedMissing,
        Outcome::DeniedInvalid,
        Outcome::DeniedForbidden,
        Outcome::DeniedBadRequest,
        Outcome::DeniedTls,
        Outcome::DeniedConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Public => "public",
            Outcome::Allowed => "allowed",
            Outcome::DeniedMissing => "denied_missing",
            Outcome::DeniedInvalid => "denied_invalid",
            Outcome::DeniedForbidden => "denied_forbidden",
            Outcome::DeniedBadRequest => "denied_bad_request",
            Outcome::DeniedTls => "denied_tls",
            Outcome::DeniedConfig => "denied_config",
        }
    }

    /// Position in [`Outcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why, in more detail than the outcome; for logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    PublicRoute,
    CorsPreflight,
    ValidKey,
    NoKey,
    EmptyKey,
    RepeatedKey,
    CommaInKey,
    KeyTooLong,
    UnknownKey,
    Revoked,
    NotYetValid,
    Expired,
    ClientNotAllowed,
    NotTls,
    Path(PathError),
    MethodOverride,
    RewriteHint,
    NoMethod,
    BadHost,
    TooManyHeaders,
    NoConfig,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PublicRoute => "public_route",
            Reason::CorsPreflight => "cors_preflight",
            Reason::ValidKey => "valid_key",
            Reason::NoKey => "no_key",
            Reason::EmptyKey => "empty_key",
            Reason::RepeatedKey => "repeated_key_header",
            Reason::CommaInKey => "comma_in_key",
            Reason::KeyTooLong => "key_too_long",
            Reason::UnknownKey => "unknown_key",
            Reason::Revoked => "revoked",
            Reason::NotYetValid => "not_yet_valid",
            Reason::Expired => "expired",
            Reason::ClientNotAllowed => "client_not_allowed",
            Reason::NotTls => "not_tls",
            Reason::Path(e) => e.as_str(),
            Reason::MethodOverride => "method_override_header",
            Reason::RewriteHint => "rewrite_hint_header",
            Reason::NoMethod => "no_method",
            Reason::BadHost => "bad_host",
            Reason::TooManyHeaders => "too_many_headers",
            Reason::NoConfig => "no_config",
        }
    }
}

/// A local reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Unauthorized,
    Forbidden,
    HttpsRequired,
    BadRequest,
    Unavailable,
}

impl Reply {
    pub fn status(self) -> u32 {
        match self {
            Reply::Unauthorized => 401,
            Reply::Forbidden | Reply::HttpsRequired => 403,
            Reply::BadRequest => 400,
            Reply::Unavailable => 503,
        }
    }

    pub fn body(self) -> &'static str {
        match self {
            Reply::Unauthorized => r#"{"error":"unauthorized","message":"unauthorized access"}"#,
            Reply::Forbidden => {
                r#"{"error":"forbidden","message":"api key not allowed for this route"}"#
            }
            Reply::HttpsRequired => r#"{"error":"forbidden","message":"https required"}"#,
            Reply::BadRequest => r#"{"error":"bad_request","message":"ambiguous request"}"#,
            Reply::Unavailable => r#"{"error":"unavailable","message":"no valid configuration"}"#,
        }
    }

    /// The `grpc-status` of the gRPC form of the reply (the host sends that
    /// form to a gRPC request only): UNAUTHENTICATED, PERMISSION_DENIED,
    /// INVALID_ARGUMENT, UNAVAILABLE.
    pub fn grpc_status(self) -> u32 {
        match self {
            Reply::Unauthorized => 16,
            Reply::Forbidden | Reply::HttpsRequired => 7,
            Reply::BadRequest => 3,
            Reply::Unavailable => 14,
        }
    }
}

/// How the key header appeared in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'r> {
    Absent,
    Once(&'r [u8]),
    /// Two or more header lines.
    Repeated,
}

/// Another spelling of the key or client header (`_` for `-`) found in a
/// request, removed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alias<'r> {
    Key(&'r [u8]),
    Client(&'r [u8]),
}

/// What a decision needs from the request headers, gathered in one pass.
#[derive(Debug, Clone, Default)]
pub struct Request<'r> {
    pub path: Option<&'r [u8]>,
    pub method: Option<&'r [u8]>,
    pub authority: Option<&'r [u8]>,
    pub host: Option<&'r [u8]>,
    key_lines: u32,
    key_value: Option<&'r [u8]>,
    pub client_header: bool,
    pub aliases: Vec<Alias<'r>>,
    pub method_override: bool,
    /// An `x-original-url` or `x-rewrite-url` header (either spelling).
    pub rewrite_hint: bool,
    /// A non-empty `origin` header.
    pub origin: bool,
    /// A non-empty `access-control-request-method` header.
    pub cors_request_method: bool,
    /// Header map entries, pseudo-headers included.
    pub entries: usize,
}

impl<'r> Request<'r> {
    pub fn key(&self) -> Presented<'r> {
        match (self.key_lines, self.key_value) {
            (1, Some(v)) => Presented::Once(v),
            (0, _) | (_, None) => Presented::Absent,
            _ => Presented::Repeated,
        }
    }
}

/// Header map entries (pseudo-headers included) from which a request is
/// refused: where ngx_wasm_module 3bed278 cuts the map it hands a filter.
pub const MAX_HEADER_ENTRIES: usize = 100;

const METHOD_OVERRIDES: [&[u8]; 3] = [
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
];

/// Headers some frameworks read the request target from instead of
/// `:path` (the CVE-2018-14773 pattern).
const REWRITE_HINTS: [&[u8]; 2] = [b"x-original-url", b"x-rewrite-url"];

/// The lengths of the fixed names `Policy::scan` looks for.
const SCAN_LENGTHS: u64 = length_bit(b"host".len())
    | length_bit(b"origin".len())
    | length_bit(b"access-control-request-method".len())
    | length_bit(METHOD_OVERRIDES[0].len())
    | length_bit(METHOD_OVERRIDES[1].len())
    | length_bit(METHOD_OVERRIDES[2].len())
    | length_bit(REWRITE_HINTS[0].len())
    | length_bit(REWRITE_HINTS[1].len());

/// One bit per name length below 63; every longer length shares bit 63.
const fn length_bit(len: usize) -> u64 {
    1 << if len < 63 { len } else { 63 }
}

/// The lengths of every name `Policy::scan` looks for, the key and client
/// header names included: a header of another length is passed over after
/// one test. Computed once, when the configuration is compiled.
pub fn scan_lengths(key_header: &str, client_header: Option<&str>) -> u64 {
    SCAN_LENGTHS | length_bit(key_header.len()) | client_header.map_or(0, |c| length_bit(c.len()))
}

/// A header value without its leading and trailing spaces and tabs, as an
/// HTTP/1.1 parser reads it; HTTP/2 passes values as sent.
pub fn trim(value: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    // The common case, two tests: nothing to trim.
    if !value.first().is_some_and(blank) && !value.last().is_some_and(blank) {
        return value;
    }
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |e| e + 1);
    value.get(start..end).unwrap_or_default()
}

impl Policy {
    /// Reads what the decision needs from all request headers, as bytes;
    /// values (but `:path`) without surrounding spaces and tabs (see
    /// [`trim`]), so a request is decided the same over HTTP/1.1 and HTTP/2.
    pub fn scan<'r, I>(&self, headers: I) -> Request<'r>
    where
        I: IntoIterator<Item = (&'r [u8], &'r [u8])>,
    {
        let key_name = self.header.as_bytes();
        let client_name = self.forward_client.as_deref().map(str::as_bytes);
        let mut req = Request::default();
        for (name, raw) in headers {
            req.entries += 1;
            if self.scan_lengths & length_bit(name.len()) == 0 && name.first() != Some(&b':') {
                continue;
            }
            let value = trim(raw);
            if let Some(pseudo) = name.strip_prefix(b":") {
                match pseudo {
                    // As sent: a path with white space is refused.
                    b"path" => req.path = Some(raw),
                    b"method" => req.method = Some(value),
                    b"authority" => req.authority = Some(value),
                    _ => {}
                }
                continue;
            }
            if name.eq_ignore_ascii_case(key_name) {
                req.key_lines += 1;
                req.key_value.get_or_insert(value);
            } else if fold_eq(name, key_name) {
                req.aliases.push(Alias::Key(name));
            } else if let Some(client) = client_name.filter(|c| fold_eq(name, c)) {
                if name.eq_ignore_ascii_case(client) {
                    req.client_header = true;
                } else {
                    req.aliases.push(Alias::Client(name));
                }
            } else if name.eq_ignore_ascii_case(b"host") {
                req.host.get_or_insert(value);
            } else if name.eq_ignore_ascii_case(b"origin") {
                req.origin |= !value.is_empty();
            } else if name.eq_ignore_ascii_case(b"access-control-request-method") {
                req.cors_request_method |= !value.is_empty();
            } else if METHOD_OVERRIDES.iter().any(|m| fold_eq(name, m)) {
                req.method_override = true;
            } else if REWRITE_HINTS.iter().any(|m| fold_eq(name, m)) {
                req.rewrite_hint = true;
            }
        }
        req
    }

    /// Decides what to do with a request.
    pub fn decide<'p, 'r>(&'p self, req: &Request<'r>, env: &dyn Env) -> Decision<'p, 'r> {
        let mut d = Decision {
            outcome: Outcome::Public,
            reason: Reason::PublicRoute,
            route: None,
            key: None,
            client: None,
            presented: None,
            path_end: None,
            reply: None,
            strip_key: self.strip_key,
            set_client: None,
            mode: self.mode,
        };

        // A map this large may be cut: ngx_wasm_module (Kong) hands a filter
        // the first 100 entries only, and what it leaves out (a second key,
        // a forged client header) would go upstream unjudged.
        if req.entries >= MAX_HEADER_ENTRIES {
            return d.deny(
                Outcome::DeniedBadRequest,
                Reason::TooManyHeaders,
                Reply::BadRequest,
            );
        }

        // 1. Canonical path.
        let canonical = match req.path.map(path::canonical) {
            Some(Ok(p)) => {
                // Borrowed: a prefix of `:path`, so its length is where
                // the path part ends.
                if let Cow::Borrowed(plain) = &p {
                    d.path_end = Some(plain.len());
                }
                p
            }
            Some(Err(e)) => {
                return d.deny(
                    Outcome::DeniedBadRequest,
                    Reason::Path(e),
                    Reply::BadRequest,
                )
            }
            None => {
                let reason = Reason::Path(PathError::NotOriginForm);
                return d.deny(Outcome::DeniedBadRequest, reason, Reply::BadRequest);
            }
        };

        // 2. Method and host.
        if req.method_override {
            return d.deny(
                Outcome::DeniedBadRequest,
                Reason::MethodOverride,
                Reply::BadRequest,
            );
        }
        if req.rewrite_hint {
            return d.deny(
                Outcome::DeniedBadRequest,
                Reason::RewriteHint,
                Reply::BadRequest,
            );
        }
        let Some(method) = req.method.filter(|m| !m.is_empty()) else {
            return d.deny(
                Outcome::DeniedBadRequest,
                Reason::NoMethod,
                Reply::BadRequest,
            );
        };
        let authority = match self.host_from {
            HostFrom::Authority => req.authority.or(req.host),
            HostFrom::Host => req.host,
        }
        .unwrap_or_default();
        let Some(host) = host::normalize(authority) else {
            return d.deny(
                Outcome::DeniedBadRequest,
                Reason::BadHost,
                Reply::BadRequest,
            );
        };

        // Browsers send exactly `OPTIONS`; any other spelling is not a
        // preflight (an upstream might read it as another method).
        if self.allow_cors_preflight
            && method == b"OPTIONS"
            && req.origin
            && req.cors_request_method
        {
            d.reason = Reason::CorsPreflight;
            d.strip_key = true;
            return d;
        }

        // 3. Route.
        // A borrowed canonical path has no percent-escape to decode.
        let path = match &canonical {
            Cow::Borrowed(plain) => Cow::Borrowed(*plain),
            Cow::Owned(rebuilt) => path::match_key(rebuilt),
        };
        let route = self
            .route_index
            .find(&self.routes, &path, method, host)
            .and_then(|i| self.routes.get(i));
        d.route = route;
        if route.map_or(self.default_auth, |r| r.auth) == Auth::None {
            // 4. Public.
            return d;
        }

        // 5. Private.
        if self.require_tls && !env.is_tls() {
            return d.deny(Outcome::DeniedTls, Reason::NotTls, Reply::HttpsRequired);
        }
        let value = match req.key() {
            Presented::Absent => {
                return d.deny(Outcome::DeniedMissing, Reason::NoKey, Reply::Unauthorized)
            }
            Presented::Repeated => {
                return d.deny(
                    Outcome::DeniedInvalid,
                    Reason::RepeatedKey,
                    Reply::Unauthorized,
                )
            }
            Presented::Once(v) => v,
        };
        d.presented = Some(value);
        if value.is_empty() {
            return d.deny(
                Outcome::DeniedMissing,
                Reason::EmptyKey,
                Reply::Unauthorized,
            );
        }
        if value.contains(&b',') {
            return d.deny(
                Outcome::DeniedInvalid,
                Reason::CommaInKey,
                Reply::Unauthorized,
            );
        }
        if value.len() > MAX_KEY_LEN {
            return d.deny(
                Outcome::DeniedInvalid,
                Reason::KeyTooLong,
                Reply::Unauthorized,
            );
        }
        let digest: [u8; 32] = Sha256::digest(value).into();
        let Some(key) = self.lookup_digest(&digest) else {
            return d.deny(
                Outcome::DeniedInvalid,
                Reason::UnknownKey,
                Reply::Unauthorized,
            );
        };
        d.key = Some(key);
        d.client = Some(self.client_name(key));
        let now = if key.has_time_bounds() {
            env.now()
        } else {
            None
        };
        let state = match key.state(now) {
            KeyState::Valid if env.revoked_elsewhere(&digest) => KeyState::Revoked,
            state => state,
        };
        let reason = match state {
            KeyState::Valid => None,
            KeyState::Revoked => Some(Reason::Revoked),
            KeyState::NotYetValid => Some(Reason::NotYetValid),
            KeyState::Expired => Some(Reason::Expired),
        };
        if let Some(reason) = reason {
            return d.deny(Outcome::DeniedInvalid, reason, Reply::Unauthorized);
        }
        if !route.is_none_or(|r| r.allows(key.client)) {
            return d.deny(
                Outcome::DeniedForbidden,
                Reason::ClientNotAllowed,
                Reply::Forbidden,
            );
        }
        d.outcome = Outcome::Allowed;
        d.reason = Reason::ValidKey;
        d.set_client = self.forward_client.as_deref().zip(d.client);
        d
    }
}

/// The decision for a request that reached a filter with no valid config.
pub fn decide_without_policy<'p, 'r>() -> Decision<'p, 'r> {
    Decision {
        outcome: Outcome::DeniedConfig,
        reason: Reason::NoConfig,
        route: None,
        key: None,
        client: None,
        presented: None,
        path_end: None,
        reply: Some(Reply::Unavailable),
        strip_key: false,
        set_client: None,
        mode: Mode::Enforce,
    }
}

/// What to do with a request, and what to log and count about it.
#[derive(Debug, Clone)]
pub struct Decision<'p, 'r> {
    pub outcome: Outcome,
    pub reason: Reason,
    /// The matched route; `None` for the default or before routing.
    pub route: Option<&'p Route>,
    /// The key the presented value hashes to, valid or not.
    pub key: Option<&'p Key>,
    pub client: Option<&'p str>,
    /// The presented key value, for the masked form in logs.
    pub presented: Option<&'r [u8]>,
    /// Where the path part of `:path` ends (before `?` or `#`), when its
    /// canonical form is that part as sent: at the length of `:path`, there
    /// is no query to look into.
    pub path_end: Option<usize>,
    /// A local reply to send instead of forwarding (never in report mode).
    pub reply: Option<Reply>,
    /// Remove the key header and its other spellings when forwarding.
    pub strip_key: bool,
    /// `(header, client)` to set upstream.
    pub set_client: Option<(&'p str, &'p str)>,
    pub mode: Mode,
}

impl<'p, 'r> Decision<'p, 'r> {
    fn deny(mut self, outcome: Outcome, reason: Reason, reply: Reply) -> Self {
        self.outcome = outcome;
        self.reason = reason;
        if self.mode == Mode::Enforce {
            self.reply = Some(reply);
        }
        self
    }

    pub fn route_name(&self) -> &'p str {
        self.route.map_or("(default)", |r| &r.name)
    }

    /// Header edits for a forwarded request: names to remove. Client-sent
    /// client headers are always removed (the configured name is replaced
    /// when a key passed).
    pub fn removals<'a>(
        &'a self,
        req: &'a Request<'r>,
        policy: &'a Policy,
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        let key = (self.strip_key && req.key_lines > 0).then_some(policy.header.as_bytes());
        let client = (req.client_header && self.set_client.is_none())
            .then_some(policy.forward_client.as_deref().map(str::as_bytes))
            .flatten();
        let aliases = req.aliases.iter().filter_map(move |a| match *a {
            Alias::Key(name) => self.strip_key.then_some(name),
            Alias::Client(name) => Some(name),
        });
        key.into_iter().chain(client).chain(aliases)
    }

    /// The log line; the presented key appears only masked.
    pub fn log_line(&self) -> LogLine<'_, 'p, 'r> {
        LogLine(self)
    }
}

/// `outcome=... reason=... route=... key=...`
pub struct LogLine<'d, 'p, 'r>(&'d Decision<'p, 'r>);

impl fmt::Display for LogLine<'_, '_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut line = Vec::new();
        self.0.write_log_line(&mut line);
        f.write_str(&String::from_utf8_lossy(&line))
    }
}

impl Decision<'_, '_> {
    /// Appends the log line to `out`. Per request, so built by hand rather
    /// than through `core::fmt` (a third of the cost, under callgrind).
    pub fn write_log_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"outcome=");
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        out.extend_from_slice(b" reason=");
        out.extend_from_slice(self.reason.as_str().as_bytes());
        self.write_route(out);
        if let Some(key) = self.key {
            out.extend_from_slice(b" key_id=");
            out.extend_from_slice(key.id.as_bytes());
            out.extend_from_slice(b" client=");
            out.extend_from_slice(self.client.unwrap_or("").as_bytes());
        } else if let Some(value) = self.presented {
            out.extend_from_slice(b" key=");
            write_masked(value, out);
        }
        if self.mode == Mode::Report {
            out.extend_from_slice(b" mode=report");
        }
    }

    /// ` route=<name>`, the name as `Route::log_name` has it.
    fn write_route(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b" route=");
        out.extend_from_slice(self.route.map_or("(default)", |r| &r.log_name).as_bytes());
    }

    /// Appends the value exposed to access logs (Envoy filter state
    /// `wasm.nected_key_auth`): `outcome=<outcome> route=<route>`, plus
    /// ` key_id=<id>` when the presented key is one of the configured keys.
    /// One property, not three: each costs the host about 4,000
    /// instructions per request.
    pub fn write_filter_state(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"outcome=");
        out.extend_from_slice(self.outcome.as_str().as_bytes());
        self.write_route(out);
        if let Some(key) = self.key {
            out.extend_from_slice(b" key_id=");
            out.extend_from_slice(key.id.as_bytes());
        }
    }
}

/// A presented key as logs may show it: `****` plus its last 4 characters
/// when the value is at least 16 bytes and those 4 are `[A-Za-z0-9_-]`,
/// else just `****`.
pub struct Masked<'a>(pub &'a [u8]);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut masked = Vec::new();
        write_masked(self.0, &mut masked);
        f.write_str(&String::from_utf8_lossy(&masked))
    }
}

fn write_masked(v: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"****");
    if v.len() >= 16 {
        if let Some(tail) = v.get(v.len() - 4..) {
            if tail
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                out.extend_from_slice(tail);
            }
        }
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
