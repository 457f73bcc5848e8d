//! The plugin configuration: its shape (shared with the JSON Schema), and the
//! compile step that turns a document into a [`Policy`], or into every error
//! it holds, each with its JSON path.

use crate::host::{self, HostPattern};
use crate::json::Node;
use crate::path;
use crate::policy::{
    prefix64, Auth, ClientId, DigestEntry, HostFrom, Key, Mode, PathMatch, Policy, Route,
    RouteIndex,
};
use crate::shape::{
    check_object, ConfigError, Errors, Field, JsonPath, Kind, Members, Object, Problem, Text,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Longest accepted key value; longer values are refused without hashing.
pub const MAX_KEY_LEN: usize = 512;

// ---- string rules -------------------------------------------------------

fn is_tchar_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_tchar_upper(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Header names the key or client header may not be: they are read or
/// rewritten by the proxy itself, or read by the decision for another
/// purpose (method overrides, CORS preflight), or describe the body.
pub const RESERVED_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "origin",
    "access-control-request-method",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "trailers",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

pub static HEADER_NAME: Text = Text {
    what: "a lower-case HTTP header name (token characters, no upper case)",
    check: |s| s.bytes().all(is_tchar_lower),
    pattern: Some(r"^[a-z0-9!#$%&'*+.^_`|~-]+$"),
    min_len: Some(1),
    max_len: Some(256),
    format: None,
    forbidden: RESERVED_HEADERS,
};

pub static OPTIONAL_HEADER_NAME: Text = Text {
    what: "\"\" or a lower-case HTTP header name (token characters, no upper case)",
    check: |s| s.bytes().all(is_tchar_lower),
    pattern: Some(r"^[a-z0-9!#$%&'*+.^_`|~-]*$"),
    min_len: None,
    max_len: Some(256),
    format: None,
    forbidden: RESERVED_HEADERS,
};

pub static ROUTE_NAME: Text = Text {
    what: "1 to 128 characters, no control characters",
    check: |s| !s.chars().any(char::is_control),
    pattern: Some(r"^[^\u0000-\u001f\u007f-\u009f]{1,128}$"),
    min_len: Some(1),
    max_len: Some(128),
    format: None,
    forbidden: &[],
};

pub static ROUTE_PATH: Text = Text {
    what: "a canonical path: starts with '/', no query, no '.' or '..' segment, \
           no ';params', no repeated '/', no trailing '/' (except \"/\"), \
           percent-escapes only for reserved characters, with upper-case hex",
    check: is_canonical_route_path,
    pattern: Some(r"^/([^/?#;\\\s]+(/[^/?#;\\\s]+)*)?$"),
    min_len: Some(1),
    max_len: Some(4096),
    format: None,
    forbidden: &[],
};

pub static METHOD: Text = Text {
    what: "an upper-case HTTP method (token characters, no lower case)",
    check: |s| s.bytes().all(is_tchar_upper),
    pattern: Some(r"^[A-Z0-9!#$%&'*+.^_`|~-]+$"),
    min_len: Some(1),
    max_len: Some(64),
    format: None,
    forbidden: &[],
};

pub static HOST_PATTERN: Text = Text {
    what: "a host name, IP address or '*.' wildcard, without port or trailing dot",
    check: host::valid_pattern,
    pattern: Some(host::PATTERN_REGEX),
    min_len: Some(1),
    max_len: Some(255),
    format: None,
    forbidden: &[],
};

pub static ID: Text = Text {
    what: "1 to 64 of [A-Za-z0-9._-]",
    check: |s| s.bytes().all(is_id_char),
    pattern: Some(r"^[A-Za-z0-9._-]{1,64}$"),
    min_len: Some(1),
    max_len: Some(64),
    format: None,
    forbidden: &[],
};

pub static SHA256_HEX: Text = Text {
    what: "64 hex digits (the SHA-256 of the key)",
    check: |s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()),
    pattern: Some(r"^[0-9A-Fa-f]{64}$"),
    min_len: Some(64),
    max_len: Some(64),
    format: None,
    forbidden: &[],
};

pub static INSTANT: Text = Text {
    what: "an RFC 3339 date-time such as 2026-12-01T00:00:00Z",
    check: |s| parse_instant(s).is_some(),
    pattern: None,
    min_len: None,
    max_len: Some(64),
    format: Some("date-time"),
    forbidden: &[],
};

fn is_canonical_route_path(s: &str) -> bool {
    let trailing_slash = s.len() > 1 && s.ends_with('/');
    !trailing_slash && matches!(path::canonical(s.as_bytes()), Ok(c) if *c == *s.as_bytes())
}

/// Unix time in nanoseconds of an RFC 3339 instant.
pub fn parse_instant(s: &str) -> Option<i128> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp_nanos)
}

// ---- the shape ----------------------------------------------------------

pub const AUTH_VALUES: &[&str] = &["none", "private"];
pub const MODE_VALUES: &[&str] = &["enforce", "report"];
pub const HOST_FROM_VALUES: &[&str] = &["authority", "host"];

pub static ROUTE: Object = Object {
    title: "Route",
    doc: "A route: requests it matches get its auth mode. Routes are checked in order; the first match wins.",
    fields: &[
        Field {
            name: "name",
            doc: "Unique name of the route; appears in logs and in the access-log filter state.",
            required: true,
            kind: Kind::Text { rule: &ROUTE_NAME, default: None },
        },
        Field {
            name: "path",
            doc: "Matches exactly this canonical path. Exactly one of `path` and `prefix`.",
            required: false,
            kind: Kind::Text { rule: &ROUTE_PATH, default: None },
        },
        Field {
            name: "prefix",
            doc: "Matches this canonical path and everything below it, by whole segments: `/api/v1/rules` matches `/api/v1/rules` and `/api/v1/rules/...`, never `/api/v1/rulesx`; `/` matches everything. Exactly one of `path` and `prefix`.",
            required: false,
            kind: Kind::Text { rule: &ROUTE_PATH, default: None },
        },
        Field {
            name: "methods",
            doc: "Upper-case methods this route matches (the request method is compared upper-cased); a listed GET also matches HEAD. Default: any method.",
            required: false,
            kind: Kind::TextList { rule: &METHOD },
        },
        Field {
            name: "hosts",
            doc: "Host names or `*.suffix` wildcards this route matches, compared lower-case with the port and one trailing dot removed; `*.example.com` matches one or more labels before `.example.com`, never `example.com` itself. Default: any host.",
            required: false,
            kind: Kind::TextList { rule: &HOST_PATTERN },
        },
        Field {
            name: "auth",
            doc: "`none`: public, no key checked. `private`: a valid key is required.",
            required: true,
            kind: Kind::Choice { values: AUTH_VALUES, default: None },
        },
        Field {
            name: "allow_clients",
            doc: "Only on `private` routes: the clients allowed here; a valid key of another client gets 403. Each must be the client of some key. Default: all clients.",
            required: false,
            kind: Kind::TextList { rule: &ID },
        },
    ],
    rules: &[
        "exactly one of `path` and `prefix`",
        "`allow_clients` only on `private` routes, naming clients that hold a key",
        "route names are unique",
    ],
    schema_extra: r#"{
        "oneOf": [{"required": ["path"]}, {"required": ["prefix"]}],
        "if": {"properties": {"auth": {"const": "none"}}},
        "then": {"not": {"required": ["allow_clients"]}}
    }"#,
};

pub static KEY: Object = Object {
    title: "Key",
    doc: "An accepted API key, known only by the SHA-256 digest of its exact bytes.",
    fields: &[
        Field {
            name: "id",
            doc: "Unique name of the key; appears in logs and in the access-log filter state.",
            required: true,
            kind: Kind::Text { rule: &ID, default: None },
        },
        Field {
            name: "client",
            doc: "Who holds the key. Several keys may share a client, which is how a rotation keeps one identity. Default: the key's `id`.",
            required: false,
            kind: Kind::Text { rule: &ID, default: None },
        },
        Field {
            name: "sha256",
            doc: "Hex SHA-256 of the exact key bytes (any case); unique. `nected-key hash` computes it.",
            required: true,
            kind: Kind::Text { rule: &SHA256_HEX, default: None },
        },
        Field {
            name: "revoked",
            doc: "A revoked key is refused.",
            required: false,
            kind: Kind::Bool { default: false },
        },
        Field {
            name: "not_before",
            doc: "RFC 3339 instant from which the key is valid (inclusive), checked per request against the gateway clock. Default: unbounded.",
            required: false,
            kind: Kind::Text { rule: &INSTANT, default: None },
        },
        Field {
            name: "expires",
            doc: "RFC 3339 instant at which the key stops being valid (exclusive); must be after `not_before`. Default: unbounded.",
            required: false,
            kind: Kind::Text { rule: &INSTANT, default: None },
        },
    ],
    rules: &[
        "key ids are unique",
        "digests are unique (compared case-insensitively)",
        "`expires` is after `not_before`",
    ],
    schema_extra: "{}",
};

pub static CONFIG: Object = Object {
    title: "nected-key-auth plugin configuration",
    doc: "Configuration of the nected-key-auth proxy-wasm filter. A config that breaks any rule is rejected whole.",
    fields: &[
        Field {
            name: "header",
            doc: "Request header that carries the key; a lower-case token, matched case-insensitively; not a pseudo-header, `host` or a hop-by-hop header.",
            required: false,
            kind: Kind::Text { rule: &HEADER_NAME, default: Some("nected-api-key") },
        },
        Field {
            name: "default_auth",
            doc: "Auth mode for a request that matches no route.",
            required: false,
            kind: Kind::Choice { values: AUTH_VALUES, default: Some("private") },
        },
        Field {
            name: "routes",
            doc: "Routes, checked in order; the first match wins.",
            required: false,
            kind: Kind::ObjectList { item: &ROUTE },
        },
        Field {
            name: "keys",
            doc: "Accepted keys, by digest.",
            required: false,
            kind: Kind::ObjectList { item: &KEY },
        },
        Field {
            name: "strip_key",
            doc: "Remove the key header (and its `_` spellings) before the request goes upstream.",
            required: false,
            kind: Kind::Bool { default: true },
        },
        Field {
            name: "forward_client",
            doc: "Header set upstream to the client of the key that passed; \"\" turns it off. A client-sent header of this name, also spelled with `_` for `-`, is always removed. Same rules as `header`, and different from it.",
            required: false,
            kind: Kind::Text { rule: &OPTIONAL_HEADER_NAME, default: Some("x-nected-client") },
        },
        Field {
            name: "allow_cors_preflight",
            doc: "Let a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) through without a key; key and client headers are removed.",
            required: false,
            kind: Kind::Bool { default: false },
        },
        Field {
            name: "require_tls",
            doc: "A request to a `private` route that did not arrive over TLS gets 403 `https required` before any key check.",
            required: false,
            kind: Kind::Bool { default: false },
        },
        Field {
            name: "mode",
            doc: "`enforce`, or `report`: decide, count and log as `enforce` but let every request through (shadow roll-out).",
            required: false,
            kind: Kind::Choice { values: MODE_VALUES, default: Some("enforce") },
        },
        Field {
            name: "host_from",
            doc: "Where the request's host is read: `authority` (`:authority`, or `host` where the host gives none), or `host`: the client's `host` header only, for hosts whose `:authority` is not the client's host (ngx_wasm_module, Kong: nginx's `server_name`).",
            required: false,
            kind: Kind::Choice { values: HOST_FROM_VALUES, default: Some("authority") },
        },
        Field {
            name: "log_requests",
            doc: "Log the decision of requests that pass too, at debug (outcome, reason, route, key id). A refused request's decision (outcome, reason, route, masked key) is logged at debug either way; off, a request that passes formats and hands the host no line.",
            required: false,
            kind: Kind::Bool { default: false },
        },
    ],
    rules: &[
        "`forward_client` differs from `header`, also when `_` is read as `-`",
        "the configuration is a JSON object (`{}` is valid: every request then needs a key, and none is accepted)",
    ],
    schema_extra: "{}",
};

// ---- compile ------------------------------------------------------------

/// Parses, checks and compiles a plugin configuration. On error, returns
/// every problem found, each with its JSON path; never a configured value.
pub fn compile(bytes: &[u8]) -> Result<Policy, Vec<ConfigError>> {
    let root = JsonPath::root();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![ConfigError {
            path: root,
            problem: Problem::Empty,
        }]);
    }
    let node = Node::parse(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "invalid value",
            serde_json::error::Category::Io => "read error",
        };
        vec![ConfigError {
            path: root.clone(),
            problem: Problem::Syntax {
                line: e.line(),
                column: e.column(),
                what: what.to_owned(),
            },
        }]
    })?;
    let mut errors = Errors::default();
    let policy = compile_node(&node, bytes, &mut errors);
    match policy {
        Some(policy) if errors.0.is_empty() => Ok(policy),
        _ => Err(errors.0),
    }
}

fn compile_node(node: &Node, bytes: &[u8], errors: &mut Errors) -> Option<Policy> {
    let root = JsonPath::root();
    let top = check_object(node, &CONFIG, &root, errors)?;

    let (keys, clients, by_digest) = compile_keys(&top, &root, errors);
    let client_index: HashMap<&str, ClientId> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (&**c, i as ClientId))
        .collect();
    let routes = compile_routes(&top, &root, &client_index, errors);

    let header = top.text("header").unwrap_or("nected-api-key");
    let forward_client = top.text("forward_client").unwrap_or("x-nected-client");
    if !forward_client.is_empty() && fold_eq(forward_client.as_bytes(), header.as_bytes()) {
        errors.add(
            root.field("forward_client"),
            Problem::Rule("must differ from `header` (also when `_` is read as `-`)"),
        );
    }
    let auth = |v: Option<&str>| {
        if v == Some("none") {
            Auth::None
        } else {
            Auth::Private
        }
    };
    // The canonical form: the same however the document was written.
    let fingerprint =
        crate::canonical::sha256(node).unwrap_or_else(|| Sha256::digest(bytes).into());
    let forward_client = (!forward_client.is_empty()).then_some(forward_client);
    Some(Policy {
        header: header.into(),
        www_authenticate: format!("ApiKey header=\"{header}\"").into(),
        default_auth: auth(top.text("default_auth")),
        route_index: RouteIndex::new(&routes),
        routes: routes.into(),
        keys: keys.into(),
        clients: clients.into(),
        by_digest: by_digest.into(),
        strip_key: top.flag("strip_key"),
        forward_client: forward_client.map(Into::into),
        scan_lengths: crate::decide::scan_lengths(header, forward_client),
        allow_cors_preflight: top.flag("allow_cors_preflight"),
        require_tls: top.flag("require_tls"),
        log_requests: top.flag("log_requests"),
        mode: if top.text("mode") == Some("report") {
            Mode::Report
        } else {
            Mode::Enforce
        },
        host_from: if top.text("host_from") == Some("host") {
            HostFrom::Host
        } else {
            HostFrom::Authority
        },
        fingerprint: hex(fingerprint.get(..6).unwrap_or_default()),
    })
}

/// Header names equal when `_` is read as `-` (and ASCII case ignored).
pub fn fold_eq(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
}

type CompiledKeys = (Vec<Key>, Vec<Box<str>>, Vec<DigestEntry>);

fn compile_keys(top: &Members, root: &JsonPath, errors: &mut Errors) -> CompiledKeys {
    let base = root.field("keys");
    let mut keys = Vec::new();
    let mut clients: Vec<Box<str>> = Vec::new();
    let mut by_digest: Vec<DigestEntry> = Vec::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut digests: HashMap<[u8; 32], usize> = HashMap::new();
    let mut client_ids: HashMap<&str, usize> = HashMap::new();
    let base = &base;
    let field_of = |name: &'static str| move |i: usize| base.index(i).field(name);
    for (i, item) in top.list("keys").iter().enumerate() {
        let at = base.index(i);
        let Some(m) = check_object(item, &KEY, &at, errors) else {
            continue;
        };
        // Each rule is checked on its own, so one broken field never hides
        // another error.
        let id = m.text("id");
        if let Some(id) = id {
            first_use(&mut ids, id, i, field_of("id"), errors);
        }
        let digest = m
            .text("sha256")
            .and_then(unhex32)
            .filter(|&d| first_use(&mut digests, d, i, field_of("sha256"), errors));
        let not_before = m.text("not_before").and_then(parse_instant);
        let expires = m.text("expires").and_then(parse_instant);
        if let (Some(nb), Some(ex)) = (not_before, expires) {
            if ex <= nb {
                errors.add(
                    at.field("expires"),
                    Problem::Rule("must be after `not_before`"),
                );
            }
        }
        // The client exists even if this key is broken, so that
        // `allow_clients` naming it does not add a misleading error.
        let Some(client_name) = m.text("client").or(id) else {
            continue;
        };
        let client = *client_ids.entry(client_name).or_insert_with(|| {
            clients.push(client_name.into());
            clients.len() - 1
        });
        let (Some(id), Some(digest)) = (id, digest) else {
            continue;
        };
        by_digest.push((prefix64(&digest), digest, keys.len() as u32));
        keys.push(Key {
            id: id.into(),
            client: client as ClientId,
            revoked: m.flag("revoked"),
            not_before,
            expires,
        });
    }
    // By digest; the 8-byte prefix (its first bytes) settles most comparisons.
    by_digest.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    (keys, clients, by_digest)
}

fn compile_routes(
    top: &Members,
    root: &JsonPath,
    clients: &HashMap<&str, ClientId>,
    errors: &mut Errors,
) -> Vec<Route> {
    let base = root.field("routes");
    let mut routes = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, item) in top.list("routes").iter().enumerate() {
        let at = base.index(i);
        let Some(m) = check_object(item, &ROUTE, &at, errors) else {
            continue;
        };
        if let Some(name) = m.text("name") {
            first_use(&mut names, name, i, |i| base.index(i).field("name"), errors);
        }
        let matcher = match (has_member(item, "path"), has_member(item, "prefix")) {
            (true, true) => {
                errors.add(
                    at.clone(),
                    Problem::Rule("give exactly one of `path` and `prefix`, not both"),
                );
                None
            }
            (false, false) => {
                errors.add(
                    at.clone(),
                    Problem::Rule("give exactly one of `path` and `prefix`"),
                );
                None
            }
            // A malformed value has its own error already.
            _ => {
                // Stored in the form requests are compared in.
                let key = |p: &str| {
                    path::match_key(p.as_bytes())
                        .into_owned()
                        .into_boxed_slice()
                };
                match (m.text("path"), m.text("prefix")) {
                    (Some(p), _) => Some(PathMatch::Exact(key(p))),
                    (_, Some("/")) => Some(PathMatch::Everything),
                    (_, Some(p)) => Some(PathMatch::Prefix(key(p))),
                    (None, None) => None,
                }
            }
        };
        let auth = match m.text("auth") {
            Some("none") => Auth::None,
            _ => Auth::Private,
        };
        let mut allow = Vec::new();
        if m.has("allow_clients") {
            if auth == Auth::None && m.text("auth").is_some() {
                errors.add(
                    at.field("allow_clients"),
                    Problem::Rule("only allowed on `private` routes"),
                );
            }
            for (j, c) in m.list("allow_clients").iter().enumerate() {
                let Node::String(c) = c else { continue };
                match clients.get(&**c) {
                    Some(&id) if !allow.contains(&id) => allow.push(id),
                    Some(_) => {}
                    None => errors.add(
                        at.field("allow_clients").index(j),
                        Problem::Rule("names a client that holds no key"),
                    ),
                }
            }
        }
        let mut methods: Vec<Box<[u8]>> = strings(m.list("methods"))
            .map(|s| s.as_bytes().into())
            .collect();
        // A listed GET also matches HEAD.
        if methods.iter().any(|m| &**m == b"GET") && !methods.iter().any(|m| &**m == b"HEAD") {
            methods.push(b"HEAD"[..].into());
        }
        let hosts: Vec<HostPattern> = strings(m.list("hosts")).map(HostPattern::new).collect();
        let (Some(name), Some(matcher)) = (m.text("name"), matcher) else {
            continue;
        };
        routes.push(Route {
            name: name.into(),
            log_name: Route::log_name_of(name),
            matcher,
            methods: methods.into(),
            hosts: hosts.into(),
            auth,
            allow_clients: m.has("allow_clients").then(|| allow.into()),
        });
    }
    routes
}

/// Records where a unique value is first used (the index of its list item);
/// on a repeat, reports it as a duplicate of that place and returns false.
/// Paths are only built for an error.
fn first_use<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    value: K,
    i: usize,
    path: impl Fn(usize) -> JsonPath,
    errors: &mut Errors,
) -> bool {
    match seen.entry(value) {
        std::collections::hash_map::Entry::Occupied(first) => {
            let first = path(*first.get());
            errors.add(path(i), Problem::Duplicate { first });
            false
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(i);
            true
        }
    }
}

fn has_member(node: &Node, name: &str) -> bool {
    matches!(node, Node::Object(members) if members.iter().any(|(n, _)| n == name))
}

fn strings<'a>(items: &'a [Node<'a>]) -> impl Iterator<Item = &'a str> {
    items.iter().filter_map(|n| match n {
        Node::String(s) => Some(&**s),
        _ => None,
    })
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = [0u8; 32];
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (&hi, &lo) = (pair.first()?, pair.get(1)?);
        *o = nibble(hi)? << 4 | nibble(lo)?;
    }
    Some(out)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
