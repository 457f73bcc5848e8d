//! Host unit tests of the config compiler, one table row per rule of the
//! contract (`CONTRACT.md`, "Plugin configuration").

use super::*;
use crate::policy::{Auth, HostFrom, Mode, PathMatch, Policy, Summary};
use crate::shape::{ConfigError, Problem};
use sha2::{Digest, Sha256};

// ---- helpers --------------------------------------------------------------

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha_hex(data: &[u8]) -> String {
    hex_of(&Sha256::digest(data))
}

/// Three distinct digests, and one of them in upper case.
fn da() -> String {
    "a1".repeat(32)
}
fn db() -> String {
    "b2".repeat(32)
}
fn dc() -> String {
    "c3".repeat(32)
}

/// Replaces `@A`, `@B`, `@C` by 64-hex digests and `@UA` by `@A` in upper case.
fn fill(json: &str) -> String {
    json.replace("@UA", &da().to_uppercase())
        .replace("@A", &da())
        .replace("@B", &db())
        .replace("@C", &dc())
}

fn render(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn ok(json: &str) -> Policy {
    let text = fill(json);
    match compile(text.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("rejected {text}:\n{}", render(&e)),
    }
}

fn errs(json: &str) -> Vec<ConfigError> {
    compile_errs(fill(json).as_bytes())
}

fn compile_errs(bytes: &[u8]) -> Vec<ConfigError> {
    match compile(bytes) {
        Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(bytes)),
        Err(e) => e,
    }
}

/// The kind of a [`Problem`], for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum P {
    Syntax,
    Empty,
    Type,
    Unknown,
    Repeated,
    Missing,
    EmptyList,
    NotOneOf,
    Invalid,
    Forbidden,
    Duplicate,
    Rule,
}

fn kind(p: &Problem) -> P {
    match p {
        Problem::Syntax { .. } => P::Syntax,
        Problem::Empty => P::Empty,
        Problem::WrongType { .. } => P::Type,
        Problem::UnknownField
        | Problem::UnknownFieldNotShown
        | Problem::UnknownFieldDidYouMean { .. } => P::Unknown,
        Problem::RepeatedField => P::Repeated,
        Problem::MissingField => P::Missing,
        Problem::EmptyList => P::EmptyList,
        Problem::NotOneOf { .. } => P::NotOneOf,
        Problem::Invalid { .. } => P::Invalid,
        Problem::Forbidden => P::Forbidden,
        Problem::Duplicate { .. } => P::Duplicate,
        Problem::Rule(_) => P::Rule,
    }
}

fn shape_of(errors: &[ConfigError]) -> Vec<(String, P)> {
    let mut got: Vec<(String, P)> = errors
        .iter()
        .map(|e| (e.path.as_str().to_owned(), kind(&e.problem)))
        .collect();
    got.sort();
    got
}

/// A key entry holding `@A`, so a route may name the client `billing`.
const BILLING: &str = r#"{"id":"billing-1","client":"billing","sha256":"@A"}"#;

// Unix seconds of a few instants (computed with `date -u -d ... +%s`).
const S_2026_01_01: i128 = 1_767_225_600;
const S_2026_11_20: i128 = 1_795_132_800;
const S_2026_11_25: i128 = 1_795_564_800;
const S_2026_12_01: i128 = 1_796_083_200;
const NS: i128 = 1_000_000_000;
const DAY: i128 = 24 * 3600 * NS;

// ---- rejected configs -----------------------------------------------------

/// `(case, config, expected errors as (JSON path, kind))`
type BadRow = (&'static str, String, Vec<(&'static str, P)>);

#[test]
fn bad_configs_are_rejected_with_their_json_paths() {
    use P::*;
    let long65 = "k".repeat(65);
    let name129 = "r".repeat(129);
    let cases: Vec<BadRow> = vec![
        // -- an empty, absent or non-JSON configuration
        ("an empty configuration", "".into(), vec![("$", Empty)]),
        ("an empty configuration (white space only)", " \n\t\r  ".into(), vec![("$", Empty)]),
        ("a non-JSON configuration", "nected".into(), vec![("$", Syntax)]),
        ("a non-JSON configuration (truncated)", r#"{"header":"#.into(), vec![("$", Syntax)]),
        ("a non-JSON configuration (trailing garbage)", "{} {}".into(), vec![("$", Syntax)]),
        ("a non-JSON configuration (single quotes)", "{'mode':'enforce'}".into(), vec![("$", Syntax)]),
        ("a non-JSON configuration (trailing comma)", r#"{"mode":"enforce",}"#.into(), vec![("$", Syntax)]),
        ("the configuration is a JSON object, not null", "null".into(), vec![("$", Type)]),
        ("the configuration is a JSON object, not an array", "[]".into(), vec![("$", Type)]),
        ("the configuration is a JSON object, not a string", r#""{}""#.into(), vec![("$", Type)]),
        ("the configuration is a JSON object, not a number", "42".into(), vec![("$", Type)]),
        ("the configuration is a JSON object, not a boolean", "true".into(), vec![("$", Type)]),
        // -- unknown field
        ("unknown field (top level)", r#"{"headers":"x-api-key"}"#.into(), vec![("$.headers", Unknown)]),
        ("unknown field whose name does not look like a field: not shown", r#"{"strip key":true}"#.into(), vec![("$", Unknown)]),
        ("unknown field that could be a pasted key: not shown", r#"{"keys":[{"id":"a","sha256":"ABCDEFabcdef0123456789abcdefABCDEF0123456789abcdefABCDEF01234567","nk_REAL_SECRET_KEY_abc123":1}]}"#.into(), vec![("$.keys[0]", Unknown)]),
        ("unknown field in camelCase: shown", r#"{"allowCorsPreflight":true}"#.into(), vec![("$.allowCorsPreflight", Unknown)]),
        ("unknown field (in a route)", r#"{"routes":[{"name":"a","path":"/a","auth":"none","public":true}]}"#.into(), vec![("$.routes[0].public", Unknown)]),
        ("unknown field (in a key)", r#"{"keys":[{"id":"a","sha256":"@A","client_id":"x"}]}"#.into(), vec![("$.keys[0].client_id", Unknown)]),
        // -- wrong type
        ("wrong type: `header` is a string", r#"{"header":1}"#.into(), vec![("$.header", Type)]),
        ("wrong type: `default_auth` is a string", r#"{"default_auth":false}"#.into(), vec![("$.default_auth", Type)]),
        ("wrong type: `strip_key` is a boolean", r#"{"strip_key":"false"}"#.into(), vec![("$.strip_key", Type)]),
        ("wrong type: `allow_cors_preflight` is a boolean", r#"{"allow_cors_preflight":0}"#.into(), vec![("$.allow_cors_preflight", Type)]),
        ("wrong type: `require_tls` is a boolean", r#"{"require_tls":null}"#.into(), vec![("$.require_tls", Type)]),
        ("wrong type: `mode` is a string", r#"{"mode":["report"]}"#.into(), vec![("$.mode", Type)]),
        ("wrong type: `log_requests` is a boolean", r#"{"log_requests":"true"}"#.into(), vec![("$.log_requests", Type)]),
        ("wrong type: `forward_client` is a string", r#"{"forward_client":false}"#.into(), vec![("$.forward_client", Type)]),
        ("wrong type: `routes` is an array", r#"{"routes":{}}"#.into(), vec![("$.routes", Type)]),
        ("wrong type: `keys` is an array", r#"{"keys":"k"}"#.into(), vec![("$.keys", Type)]),
        ("wrong type: a route is an object", r#"{"routes":[[]]}"#.into(), vec![("$.routes[0]", Type)]),
        ("wrong type: a key is an object", r#"{"keys":[null]}"#.into(), vec![("$.keys[0]", Type)]),
        ("wrong type: `routes[].name` is a string", r#"{"routes":[{"name":7,"path":"/a","auth":"none"}]}"#.into(), vec![("$.routes[0].name", Type)]),
        ("wrong type: `routes[].path` is a string", r#"{"routes":[{"name":"a","path":["/a"],"auth":"none"}]}"#.into(), vec![("$.routes[0].path", Type)]),
        ("wrong type: `routes[].methods` is an array", r#"{"routes":[{"name":"a","path":"/a","methods":"GET","auth":"none"}]}"#.into(), vec![("$.routes[0].methods", Type)]),
        ("wrong type: `routes[].methods[]` are strings", r#"{"routes":[{"name":"a","path":"/a","methods":["GET",1],"auth":"none"}]}"#.into(), vec![("$.routes[0].methods[1]", Type)]),
        ("wrong type: `routes[].hosts[]` are strings", r#"{"routes":[{"name":"a","path":"/a","hosts":[true],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[0]", Type)]),
        ("wrong type: `routes[].allow_clients` is an array", format!(r#"{{"keys":[{BILLING}],"routes":[{{"name":"a","path":"/a","auth":"private","allow_clients":"billing"}}]}}"#), vec![("$.routes[0].allow_clients", Type)]),
        ("wrong type: `keys[].sha256` is a string", r#"{"keys":[{"id":"a","sha256":1}]}"#.into(), vec![("$.keys[0].sha256", Type)]),
        ("wrong type: `keys[].revoked` is a boolean", r#"{"keys":[{"id":"a","sha256":"@A","revoked":"yes"}]}"#.into(), vec![("$.keys[0].revoked", Type)]),
        ("wrong type: `keys[].expires` is a string", r#"{"keys":[{"id":"a","sha256":"@A","expires":1796083200}]}"#.into(), vec![("$.keys[0].expires", Type)]),
        // -- choices
        ("`default_auth`: `none` or `private`", r#"{"default_auth":"public"}"#.into(), vec![("$.default_auth", NotOneOf)]),
        ("`routes[].auth`: `none` or `private`", r#"{"routes":[{"name":"a","path":"/a","auth":"public"}]}"#.into(), vec![("$.routes[0].auth", NotOneOf)]),
        ("`mode`: `enforce` or `report`", r#"{"mode":"shadow"}"#.into(), vec![("$.mode", NotOneOf)]),
        ("`mode`: `enforce` or `report` (case-sensitive)", r#"{"mode":"Enforce"}"#.into(), vec![("$.mode", NotOneOf)]),
        ("`host_from`: `authority` or `host`", r#"{"host_from":"server_name"}"#.into(), vec![("$.host_from", NotOneOf)]),
        ("`host_from`: `authority` or `host` (case-sensitive)", r#"{"host_from":"Host"}"#.into(), vec![("$.host_from", NotOneOf)]),
        ("wrong type: `host_from` is a string", r#"{"host_from":true}"#.into(), vec![("$.host_from", Type)]),
        // -- a field given twice
        ("a field given twice (top level)", r#"{"mode":"report","mode":"enforce"}"#.into(), vec![("$.mode", Repeated)]),
        ("a field given twice (same value)", r#"{"strip_key":true,"strip_key":true}"#.into(), vec![("$.strip_key", Repeated)]),
        ("a field given twice (in a route)", r#"{"routes":[{"name":"a","path":"/a","auth":"private","auth":"none"}]}"#.into(), vec![("$.routes[0].auth", Repeated)]),
        ("a field given twice (in a key)", r#"{"keys":[{"id":"a","sha256":"@A","sha256":"@B"}]}"#.into(), vec![("$.keys[0].sha256", Repeated)]),
        // -- required fields
        ("`routes[].name`: required", r#"{"routes":[{"path":"/a","auth":"none"}]}"#.into(), vec![("$.routes[0].name", Missing)]),
        ("`routes[].auth`: required", r#"{"routes":[{"name":"a","path":"/a"}]}"#.into(), vec![("$.routes[0].auth", Missing)]),
        ("`keys[].id`: required", r#"{"keys":[{"sha256":"@A"}]}"#.into(), vec![("$.keys[0].id", Missing)]),
        ("`keys[].sha256`: required", r#"{"keys":[{"id":"a"}]}"#.into(), vec![("$.keys[0].sha256", Missing)]),
        // -- uniqueness
        ("`routes[].name`: unique", r#"{"routes":[{"name":"a","path":"/a","auth":"none"},{"name":"a","path":"/b","auth":"none"}]}"#.into(), vec![("$.routes[1].name", Duplicate)]),
        ("`keys[].id`: unique (duplicate id)", r#"{"keys":[{"id":"a","sha256":"@A"},{"id":"a","sha256":"@B"}]}"#.into(), vec![("$.keys[1].id", Duplicate)]),
        ("`keys[].sha256`: unique (duplicate digest)", r#"{"keys":[{"id":"a","sha256":"@A"},{"id":"b","sha256":"@A"}]}"#.into(), vec![("$.keys[1].sha256", Duplicate)]),
        ("`keys[].sha256`: unique, any case", r#"{"keys":[{"id":"a","sha256":"@A"},{"id":"b","sha256":"@UA"}]}"#.into(), vec![("$.keys[1].sha256", Duplicate)]),
        ("`keys[].sha256`: unique (third key)", r#"{"keys":[{"id":"a","sha256":"@A"},{"id":"b","sha256":"@B"},{"id":"c","sha256":"@UA"}]}"#.into(), vec![("$.keys[2].sha256", Duplicate)]),
        // -- bad hex
        ("`keys[].sha256`: bad hex", format!(r#"{{"keys":[{{"id":"a","sha256":"{}g"}}]}}"#, "0".repeat(63)), vec![("$.keys[0].sha256", Invalid)]),
        ("`keys[].sha256`: wrong hex length (63)", format!(r#"{{"keys":[{{"id":"a","sha256":"{}"}}]}}"#, "0".repeat(63)), vec![("$.keys[0].sha256", Invalid)]),
        ("`keys[].sha256`: wrong hex length (65)", format!(r#"{{"keys":[{{"id":"a","sha256":"{}"}}]}}"#, "0".repeat(65)), vec![("$.keys[0].sha256", Invalid)]),
        ("`keys[].sha256`: wrong hex length (128, SHA-512)", format!(r#"{{"keys":[{{"id":"a","sha256":"{}"}}]}}"#, "0".repeat(128)), vec![("$.keys[0].sha256", Invalid)]),
        ("`keys[].sha256`: wrong hex length (empty)", r#"{"keys":[{"id":"a","sha256":""}]}"#.into(), vec![("$.keys[0].sha256", Invalid)]),
        ("`keys[].sha256`: no 0x prefix", format!(r#"{{"keys":[{{"id":"a","sha256":"0x{}"}}]}}"#, "0".repeat(64)), vec![("$.keys[0].sha256", Invalid)]),
        ("`keys[].sha256`: no white space", format!(r#"{{"keys":[{{"id":"a","sha256":" {}"}}]}}"#, "0".repeat(63)), vec![("$.keys[0].sha256", Invalid)]),
        // -- path / prefix: exactly one
        ("both of `path`/`prefix`", r#"{"routes":[{"name":"a","path":"/a","prefix":"/a","auth":"none"}]}"#.into(), vec![("$.routes[0]", Rule)]),
        ("neither of `path`/`prefix`", r#"{"routes":[{"name":"a","auth":"none"}]}"#.into(), vec![("$.routes[0]", Rule)]),
        // -- path / prefix: canonical
        ("`path` starts with `/`", r#"{"routes":[{"name":"a","path":"healthz","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("`path` is not empty", r#"{"routes":[{"name":"a","path":"","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("`prefix` starts with `/` (not `*`)", r#"{"routes":[{"name":"a","prefix":"*","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("`path` does not end in `/` unless it is `/`", r#"{"routes":[{"name":"a","path":"/healthz/","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("`prefix` does not end in `/` unless it is `/`", r#"{"routes":[{"name":"a","path":"/a","auth":"none"},{"name":"b","prefix":"/api/v1/rules/","auth":"private"}]}"#.into(), vec![("$.routes[1].prefix", Invalid)]),
        ("canonical: no `..` segment", r#"{"routes":[{"name":"a","prefix":"/api/../admin","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no `.` segment", r#"{"routes":[{"name":"a","prefix":"/api/./v1","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no `..;x` segment", r#"{"routes":[{"name":"a","prefix":"/api/..;x/v1","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no repeated `/` (`//`)", r#"{"routes":[{"name":"a","prefix":"/api//v1","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no repeated `/` (leading `//`)", r#"{"routes":[{"name":"a","path":"//api","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("canonical: no `;params` (`;x`)", r#"{"routes":[{"name":"a","prefix":"/api;x","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no encoded dot segment (`%2e`)", r#"{"routes":[{"name":"a","prefix":"/api/%2e%2e/admin","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no encoded unreserved character (`%2e` inside a name)", r#"{"routes":[{"name":"a","path":"/a%2eb","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("canonical: no encoded unreserved character (`%7E`)", r#"{"routes":[{"name":"a","path":"/%7Euser","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("canonical: percent hex in upper case (not `%3a`)", r#"{"routes":[{"name":"a","path":"/a%3ab","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("canonical: no query", r#"{"routes":[{"name":"a","path":"/api?x=1","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("canonical: no fragment", r#"{"routes":[{"name":"a","path":"/api#top","auth":"none"}]}"#.into(), vec![("$.routes[0].path", Invalid)]),
        ("canonical: no encoded `/`", r#"{"routes":[{"name":"a","prefix":"/a%2Fb","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no raw `\\`", r#"{"routes":[{"name":"a","prefix":"/a\\b","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no control character", r#"{"routes":[{"name":"a","prefix":"/a\u0001","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no raw space", r#"{"routes":[{"name":"a","prefix":"/a b","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        ("canonical: no invalid percent-encoding", r#"{"routes":[{"name":"a","prefix":"/a%zz","auth":"none"}]}"#.into(), vec![("$.routes[0].prefix", Invalid)]),
        // -- methods
        ("`methods`: non-empty list", r#"{"routes":[{"name":"a","path":"/a","methods":[],"auth":"none"}]}"#.into(), vec![("$.routes[0].methods", EmptyList)]),
        ("`methods`: upper-case (not `post`)", r#"{"routes":[{"name":"a","path":"/a","methods":["GET","post"],"auth":"none"}]}"#.into(), vec![("$.routes[0].methods[1]", Invalid)]),
        ("`methods`: upper-case (not `Get`)", r#"{"routes":[{"name":"a","path":"/a","methods":["Get"],"auth":"none"}]}"#.into(), vec![("$.routes[0].methods[0]", Invalid)]),
        ("`methods`: a method, not a list in a string", r#"{"routes":[{"name":"a","path":"/a","methods":["GET POST"],"auth":"none"}]}"#.into(), vec![("$.routes[0].methods[0]", Invalid)]),
        ("`methods`: not empty strings", r#"{"routes":[{"name":"a","path":"/a","methods":[""],"auth":"none"}]}"#.into(), vec![("$.routes[0].methods[0]", Invalid)]),
        // -- hosts
        ("`hosts`: non-empty list", r#"{"routes":[{"name":"a","path":"/a","hosts":[],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts", EmptyList)]),
        ("`hosts`: host names (no port)", r#"{"routes":[{"name":"a","path":"/a","hosts":["api.example.com:443"],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[0]", Invalid)]),
        ("`hosts`: host names (no trailing dot)", r#"{"routes":[{"name":"a","path":"/a","hosts":["api.example.com."],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[0]", Invalid)]),
        ("`hosts`: `*.suffix` wildcards only (not `*example.com`)", r#"{"routes":[{"name":"a","path":"/a","hosts":["ok.example.com","*example.com"],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[1]", Invalid)]),
        ("`hosts`: `*.suffix` wildcards only (not `*`)", r#"{"routes":[{"name":"a","path":"/a","hosts":["*"],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[0]", Invalid)]),
        ("`hosts`: `*.suffix` wildcards only (not in the middle)", r#"{"routes":[{"name":"a","path":"/a","hosts":["api.*.com"],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[0]", Invalid)]),
        ("`hosts`: not a URL", r#"{"routes":[{"name":"a","path":"/a","hosts":["https://api.example.com"],"auth":"none"}]}"#.into(), vec![("$.routes[0].hosts[0]", Invalid)]),
        // -- allow_clients
        ("`allow_clients`: non-empty", format!(r#"{{"keys":[{BILLING}],"routes":[{{"name":"a","path":"/a","auth":"private","allow_clients":[]}}]}}"#), vec![("$.routes[0].allow_clients", EmptyList)]),
        ("`allow_clients`: only on `private` routes (an error on `none`)", format!(r#"{{"keys":[{BILLING}],"routes":[{{"name":"a","path":"/a","auth":"none","allow_clients":["billing"]}}]}}"#), vec![("$.routes[0].allow_clients", Rule)]),
        ("`allow_clients` naming a client that holds no key", format!(r#"{{"keys":[{BILLING}],"routes":[{{"name":"a","path":"/a","auth":"private","allow_clients":["billing","nobody"]}}]}}"#), vec![("$.routes[0].allow_clients[1]", Rule)]),
        ("`allow_clients` naming a client when there are no keys", r#"{"routes":[{"name":"a","path":"/a","auth":"private","allow_clients":["billing"]}]}"#.into(), vec![("$.routes[0].allow_clients[0]", Rule)]),
        ("`allow_clients` names clients, not key ids", format!(r#"{{"keys":[{BILLING}],"routes":[{{"name":"a","path":"/a","auth":"private","allow_clients":["billing-1"]}}]}}"#), vec![("$.routes[0].allow_clients[0]", Rule)]),
        ("`allow_clients`: same charset as ids", format!(r#"{{"keys":[{BILLING}],"routes":[{{"name":"a","path":"/a","auth":"private","allow_clients":["billing team"]}}]}}"#), vec![("$.routes[0].allow_clients[0]", Invalid)]),
        // -- header
        ("`header`: a lower-case token (not upper case)", r#"{"header":"Nected-Api-Key"}"#.into(), vec![("$.header", Invalid)]),
        ("`header`: not a pseudo-header (`:path`)", r#"{"header":":path"}"#.into(), vec![("$.header", Invalid)]),
        ("`header`: not a pseudo-header (`:authority`)", r#"{"header":":authority"}"#.into(), vec![("$.header", Invalid)]),
        ("`header`: not `host`", r#"{"header":"host"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not hop-by-hop (`connection`)", r#"{"header":"connection"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not hop-by-hop (`keep-alive`)", r#"{"header":"keep-alive"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not hop-by-hop (`transfer-encoding`)", r#"{"header":"transfer-encoding"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not hop-by-hop (`te`)", r#"{"header":"te"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not hop-by-hop (`upgrade`)", r#"{"header":"upgrade"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not hop-by-hop (`proxy-authorization`)", r#"{"header":"proxy-authorization"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: a token (not empty)", r#"{"header":""}"#.into(), vec![("$.header", Invalid)]),
        ("`header`: a token (no space)", r#"{"header":"api key"}"#.into(), vec![("$.header", Invalid)]),
        ("`header`: a token (no colon)", r#"{"header":"api-key:"}"#.into(), vec![("$.header", Invalid)]),
        // -- forward_client
        ("`forward_client`: same rules as `header` (lower case)", r#"{"forward_client":"X-Nected-Client"}"#.into(), vec![("$.forward_client", Invalid)]),
        ("`forward_client`: same rules as `header` (not `host`)", r#"{"forward_client":"host"}"#.into(), vec![("$.forward_client", Forbidden)]),
        ("`header`: not a header the decision reads for another purpose", r#"{"header":"x-http-method-override"}"#.into(), vec![("$.header", Forbidden)]),
        ("`header`: not `origin` (CORS preflight)", r#"{"header":"origin"}"#.into(), vec![("$.header", Forbidden)]),
        ("`forward_client`: not a method override header", r#"{"forward_client":"x-method-override"}"#.into(), vec![("$.forward_client", Forbidden)]),
        ("`header`: not a rewrite hint", r#"{"header":"x-original-url"}"#.into(), vec![("$.header", Forbidden)]),
        ("`forward_client`: not a rewrite hint spelled with `_`", r#"{"forward_client":"x_rewrite_url"}"#.into(), vec![("$.forward_client", Forbidden)]),
        ("`forward_client`: not `content-length`", r#"{"forward_client":"content-length"}"#.into(), vec![("$.forward_client", Forbidden)]),
        ("`header`: not a reserved name spelled with `_`", r#"{"header":"x_http_method_override"}"#.into(), vec![("$.header", Forbidden)]),
        ("`forward_client`: not a reserved name spelled with `_`", r#"{"forward_client":"access_control_request_method"}"#.into(), vec![("$.forward_client", Forbidden)]),
        ("`forward_client`: same rules as `header` (not `connection`)", r#"{"forward_client":"connection"}"#.into(), vec![("$.forward_client", Forbidden)]),
        ("`forward_client`: same rules as `header` (not `:path`)", r#"{"forward_client":":path"}"#.into(), vec![("$.forward_client", Invalid)]),
        ("`forward_client`: different from `header`", r#"{"header":"x-api-key","forward_client":"x-api-key"}"#.into(), vec![("$.forward_client", Rule)]),
        ("`forward_client`: different from `header`, also with `_` for `-`", r#"{"header":"x-api-key","forward_client":"x_api_key"}"#.into(), vec![("$.forward_client", Rule)]),
        ("`forward_client`: different from `header`, also with `_` in `header`", r#"{"header":"x_api_key","forward_client":"x-api-key"}"#.into(), vec![("$.forward_client", Rule)]),
        ("`forward_client` (default) different from `header`", r#"{"header":"x-nected-client"}"#.into(), vec![("$.forward_client", Rule)]),
        ("`forward_client` (default) different from `header` spelled with `_`", r#"{"header":"x_nected_client"}"#.into(), vec![("$.forward_client", Rule)]),
        ("`forward_client` different from `header` (default) spelled with `_`", r#"{"forward_client":"nected_api_key"}"#.into(), vec![("$.forward_client", Rule)]),
        // -- not_before / expires
        ("`expires`: RFC 3339 instant (not a date)", r#"{"keys":[{"id":"a","sha256":"@A","expires":"2026-12-01"}]}"#.into(), vec![("$.keys[0].expires", Invalid)]),
        ("`expires`: RFC 3339 instant (an offset is required)", r#"{"keys":[{"id":"a","sha256":"@A","expires":"2026-12-01T00:00:00"}]}"#.into(), vec![("$.keys[0].expires", Invalid)]),
        ("`expires`: RFC 3339 instant (month 13)", r#"{"keys":[{"id":"a","sha256":"@A","expires":"2026-13-01T00:00:00Z"}]}"#.into(), vec![("$.keys[0].expires", Invalid)]),
        ("`not_before`: RFC 3339 instant (not words)", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"tomorrow"}]}"#.into(), vec![("$.keys[0].not_before", Invalid)]),
        ("`not_before`: RFC 3339 instant (not Unix seconds)", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"1795132800"}]}"#.into(), vec![("$.keys[0].not_before", Invalid)]),
        ("`expires` ≤ `not_before` is an error (equal)", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"2026-12-01T00:00:00Z","expires":"2026-12-01T00:00:00Z"}]}"#.into(), vec![("$.keys[0].expires", Rule)]),
        ("`expires` ≤ `not_before` is an error (before)", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"2026-12-01T00:00:00Z","expires":"2026-11-20T00:00:00Z"}]}"#.into(), vec![("$.keys[0].expires", Rule)]),
        ("`expires` ≤ `not_before` is an error (equal instants, other offsets)", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"2026-12-01T01:00:00+01:00","expires":"2026-12-01T00:00:00Z"}]}"#.into(), vec![("$.keys[0].expires", Rule)]),
        // -- ids
        ("`keys[].id`: 1–64 of `[A-Za-z0-9._-]` (no space)", r#"{"keys":[{"id":"bad id","sha256":"@A"}]}"#.into(), vec![("$.keys[0].id", Invalid)]),
        ("`keys[].id`: 1–64 of `[A-Za-z0-9._-]` (no `/`)", r#"{"keys":[{"id":"a/b","sha256":"@A"}]}"#.into(), vec![("$.keys[0].id", Invalid)]),
        ("`keys[].id`: 1–64 of `[A-Za-z0-9._-]` (ASCII only)", r#"{"keys":[{"id":"clé","sha256":"@A"}]}"#.into(), vec![("$.keys[0].id", Invalid)]),
        ("`keys[].id`: 1–64 of `[A-Za-z0-9._-]` (not empty)", r#"{"keys":[{"id":"","sha256":"@A"}]}"#.into(), vec![("$.keys[0].id", Invalid)]),
        ("`keys[].id`: 1–64 of `[A-Za-z0-9._-]` (not 65)", format!(r#"{{"keys":[{{"id":"{long65}","sha256":"@A"}}]}}"#), vec![("$.keys[0].id", Invalid)]),
        ("`keys[].client`: same charset", r#"{"keys":[{"id":"a","client":"billing team","sha256":"@A"}]}"#.into(), vec![("$.keys[0].client", Invalid)]),
        ("`keys[].client`: same charset (not 65)", format!(r#"{{"keys":[{{"id":"a","client":"{long65}","sha256":"@A"}}]}}"#), vec![("$.keys[0].client", Invalid)]),
        ("`keys[].client`: same charset (not empty)", r#"{"keys":[{"id":"a","client":"","sha256":"@A"}]}"#.into(), vec![("$.keys[0].client", Invalid)]),
        // -- route names
        ("`routes[].name`: not empty", r#"{"routes":[{"name":"","path":"/a","auth":"none"}]}"#.into(), vec![("$.routes[0].name", Invalid)]),
        ("`routes[].name`: at most 128 characters", format!(r#"{{"routes":[{{"name":"{name129}","path":"/a","auth":"none"}}]}}"#), vec![("$.routes[0].name", Invalid)]),
        ("`routes[].name`: no control characters (appears in logs)", r#"{"routes":[{"name":"a\nb","path":"/a","auth":"none"}]}"#.into(), vec![("$.routes[0].name", Invalid)]),
    ];
    let mut failures = Vec::new();
    for (name, json, want) in &cases {
        let text = fill(json);
        let got = match compile(text.as_bytes()) {
            Ok(_) => {
                failures.push(format!("{name}: accepted {text}"));
                continue;
            }
            Err(e) => e,
        };
        let mut want: Vec<(String, P)> = want.iter().map(|(p, k)| ((*p).to_owned(), *k)).collect();
        want.sort();
        let got_shape = shape_of(&got);
        if got_shape != want {
            failures.push(format!(
                "{name}:\n  config {text}\n  want {want:?}\n  got  {got_shape:?}\n  ({})",
                render(&got).replace('\n', " | ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn duplicates_name_the_first_occurrence() {
    let e = errs(
        r#"{"keys":[{"id":"a","sha256":"@A"},{"id":"b","sha256":"@B"},{"id":"a","sha256":"@UA"}],
            "routes":[{"name":"r","path":"/a","auth":"none"},{"name":"s","path":"/b","auth":"none"},
                      {"name":"r","path":"/c","auth":"none"}]}"#,
    );
    let dup = |path: &str| {
        e.iter()
            .find(|x| x.path.as_str() == path)
            .map(|x| x.problem.clone())
            .unwrap_or_else(|| panic!("no error at {path}: {}", render(&e)))
    };
    assert_eq!(
        dup("$.keys[2].id"),
        Problem::Duplicate {
            first: JsonPath::root().field("keys").index(0).field("id")
        }
    );
    assert_eq!(
        dup("$.keys[2].sha256").to_string(),
        "duplicate of $.keys[0].sha256"
    );
    assert_eq!(
        dup("$.routes[2].name").to_string(),
        "duplicate of $.routes[0].name"
    );
    assert_eq!(e.len(), 3, "{}", render(&e));
}

#[test]
fn all_errors_are_reported_at_once() {
    // Three independent errors, in three places of the document.
    let e = errs(
        r#"{"bogus":1,
            "keys":[{"id":"a","sha256":"xyz"}],
            "routes":[{"name":"r0","path":"/a","auth":"none"},
                      {"name":"r1","prefix":"/b/","auth":"private"}]}"#,
    );
    assert_eq!(
        shape_of(&e),
        vec![
            ("$.bogus".to_owned(), P::Unknown),
            ("$.keys[0].sha256".to_owned(), P::Invalid),
            ("$.routes[1].prefix".to_owned(), P::Invalid),
        ],
        "{}",
        render(&e)
    );

    // Many more, across every level.
    let e = errs(
        r#"{"header":"Bad","mode":"shadow","strip_key":"yes","extra":null,
            "keys":[{"id":"k 1","sha256":"@A"},
                    {"id":"k2","sha256":"@B","expires":"soon","colour":"red"},
                    {"id":"k3","sha256":"@C","not_before":"2026-12-01T00:00:00Z","expires":"2026-11-01T00:00:00Z"},
                    {"id":"k3","sha256":"@B"}],
            "routes":[{"name":"a","path":"/a/","prefix":"/b","auth":"none"},
                      {"name":"b","prefix":"/b","methods":["get"],"hosts":[],"auth":"maybe"},
                      {"name":"c","prefix":"/c","auth":"none","allow_clients":["k2"]},
                      {"name":"d","prefix":"/d","auth":"private","allow_clients":["ghost"]},
                      {"name":"a","path":"/e","auth":"none"}]}"#,
    );
    let want = vec![
        ("$.extra", P::Unknown),
        ("$.header", P::Invalid),
        ("$.keys[0].id", P::Invalid),
        ("$.keys[1].colour", P::Unknown),
        ("$.keys[1].expires", P::Invalid),
        ("$.keys[2].expires", P::Rule),
        ("$.keys[3].id", P::Duplicate),
        ("$.keys[3].sha256", P::Duplicate),
        ("$.mode", P::NotOneOf),
        ("$.routes[0]", P::Rule),
        ("$.routes[0].path", P::Invalid),
        ("$.routes[1].auth", P::NotOneOf),
        ("$.routes[1].hosts", P::EmptyList),
        ("$.routes[1].methods[0]", P::Invalid),
        ("$.routes[2].allow_clients", P::Rule),
        ("$.routes[3].allow_clients[0]", P::Rule),
        ("$.routes[4].name", P::Duplicate),
        ("$.strip_key", P::Type),
    ];
    let mut want: Vec<(String, P)> = want.into_iter().map(|(p, k)| (p.to_owned(), k)).collect();
    want.sort();
    assert_eq!(shape_of(&e), want, "{}", render(&e));
}

#[test]
fn time_rule_is_checked_even_when_the_id_is_malformed() {
    let e = errs(
        r#"{"keys":[{"id":"bad id","sha256":"@A",
                     "not_before":"2026-12-01T00:00:00Z","expires":"2026-11-01T00:00:00Z"}]}"#,
    );
    assert_eq!(
        shape_of(&e),
        vec![
            ("$.keys[0].expires".to_owned(), P::Rule),
            ("$.keys[0].id".to_owned(), P::Invalid),
        ],
        "{}",
        render(&e)
    );
}

#[test]
fn time_rule_is_checked_even_when_the_digest_is_a_duplicate() {
    let e = errs(
        r#"{"keys":[{"id":"a","sha256":"@A"},
                    {"id":"b","sha256":"@A","not_before":"2026-12-01T00:00:00Z","expires":"2026-11-01T00:00:00Z"}]}"#,
    );
    assert_eq!(
        shape_of(&e),
        vec![
            ("$.keys[1].expires".to_owned(), P::Rule),
            ("$.keys[1].sha256".to_owned(), P::Duplicate),
        ],
        "{}",
        render(&e)
    );
}

#[test]
fn both_path_and_prefix_is_reported_even_when_one_is_malformed() {
    let e = errs(r#"{"routes":[{"name":"a","path":"/a/","prefix":"/b","auth":"none"}]}"#);
    assert_eq!(
        shape_of(&e),
        vec![
            ("$.routes[0]".to_owned(), P::Rule),
            ("$.routes[0].path".to_owned(), P::Invalid),
        ],
        "{}",
        render(&e)
    );
}

#[test]
fn error_messages_never_echo_the_configuration() {
    let secret_key = b"sk_live_DoNotLogThisKeyValue_0123456789";
    let digest = sha_hex(secret_key);
    let digest_upper = digest.to_uppercase();
    let bad_digest = format!("{}zz", &digest[..62]);
    let short_digest = &digest[..40];
    let config = format!(
        r#"{{"header":"Secret-Header-Name","forward_client":"X_Secret_Client",
            "mode":"secret-mode-value","default_auth":"secret-default",
            "keys":[{{"id":"key-one","sha256":"{digest}","expires":"secret-instant-text"}},
                    {{"id":"key-two","sha256":"{digest_upper}"}},
                    {{"id":"key three secret","sha256":"{bad_digest}"}},
                    {{"id":"key-four","sha256":"{short_digest}","client":"secret client name"}}],
            "routes":[{{"name":"secret-route-name","prefix":"/secret/route/path/","auth":"none"}},
                      {{"name":"secret-route-name","path":"/other/secret;path","auth":"private"}},
                      {{"name":"r3","path":"/x","methods":["secret-method"],"hosts":["secret.host.example:99"],"auth":"none"}},
                      {{"name":"r4","path":"/y","auth":"private","allow_clients":["secret-missing-client"]}}]}}"#
    );
    let e = compile_errs(config.as_bytes());
    assert!(e.len() >= 12, "{}", render(&e));
    let secrets: Vec<String> = vec![
        String::from_utf8_lossy(secret_key).into_owned(),
        digest.clone(),
        digest_upper.clone(),
        bad_digest.clone(),
        short_digest.to_owned(),
        digest[..16].to_owned(),
        digest_upper[..16].to_owned(),
        "Secret-Header-Name".into(),
        "X_Secret_Client".into(),
        "secret-mode-value".into(),
        "secret-default".into(),
        "secret-instant-text".into(),
        "key three secret".into(),
        "secret client name".into(),
        "secret-route-name".into(),
        "/secret/route/path/".into(),
        "/other/secret;path".into(),
        "secret-method".into(),
        "secret.host.example".into(),
        "secret-missing-client".into(),
        "secret".into(),
        "Secret".into(),
    ];
    for err in &e {
        let line = err.to_string();
        assert!(line.starts_with("$"), "{line}");
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "error {line:?} echoes {s:?}");
        }
    }

    // Syntax errors do not quote the document either.
    let truncated = format!(r#"{{"keys":[{{"id":"a","sha256":"{digest}"#);
    let broken = format!(r#"{{"keys":[{{"id":"a","sha256":"{digest}" "secret"}}]}}"#);
    let invalid_escape = format!(r#"{{"header":"{digest}\q"}}"#);
    for doc in [truncated, broken, invalid_escape] {
        let e = compile_errs(doc.as_bytes());
        assert_eq!(e.len(), 1);
        let line = e[0].to_string();
        assert!(matches!(e[0].problem, Problem::Syntax { .. }), "{line}");
        assert!(!line.contains(&digest[..8]), "{line}");
        assert!(!line.contains("secret"), "{line}");
    }
}

#[test]
fn error_display_is_path_then_problem() {
    let e = errs(r#"{"mode":"report","mode":"enforce","routes":[{"name":"a","auth":"none"}]}"#);
    let lines: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert!(
        lines.contains(&"$.mode: field given more than once".to_owned()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"$.routes[0]: give exactly one of `path` and `prefix`".to_owned()),
        "{lines:?}"
    );
    let e = compile_errs(b"");
    assert_eq!(e[0].to_string(), "$: the configuration is empty");
    let e = compile_errs(b"null");
    assert_eq!(e[0].to_string(), "$: must be an object, found null");
    let e = compile_errs(b"{\n\"mode\": }");
    assert!(
        e[0].to_string()
            .starts_with("$: not valid JSON (syntax error at line 2"),
        "{}",
        e[0]
    );
}

#[test]
fn malformed_input_never_panics() {
    let mut docs: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, b'{', b'}'],
        b"\xEF\xBB\xBF{}".to_vec(),
        b"{\"header\":\"\xff\"}".to_vec(),
        b"{\"keys\":[{\"id\":\"a\",\"sha256\":\"\xc3\xa9\"}]}".to_vec(),
        format!("{{\"routes\":{}", "[".repeat(50_000)).into_bytes(),
        format!("{}{}", "{\"a\":".repeat(10_000), "1").into_bytes(),
        b"\0".to_vec(),
        // A 64-byte, non-ASCII digest (32 two-byte characters).
        format!(r#"{{"keys":[{{"id":"a","sha256":"{}"}}]}}"#, "é".repeat(32)).into_bytes(),
        format!(r#"{{"keys":[{{"id":"a","sha256":"{}"}}]}}"#, "é".repeat(64)).into_bytes(),
        format!(
            r#"{{"routes":[{{"name":"a","prefix":"/{}","auth":"none"}}]}}"#,
            "%".repeat(5000)
        )
        .into_bytes(),
        format!(
            r#"{{"routes":[{{"name":"a","path":"/a","hosts":["{}"],"auth":"none"}}]}}"#,
            "[".repeat(300)
        )
        .into_bytes(),
    ];
    // Every prefix of a good config, and every single-byte corruption of it.
    let good = fill(
        r#"{"routes":[{"name":"a","prefix":"/api","methods":["GET"],"hosts":["*.example.com"],"auth":"private","allow_clients":["billing"]}],
            "keys":[{"id":"billing-1","client":"billing","sha256":"@A","not_before":"2026-11-20T00:00:00Z","expires":"2026-12-01T00:00:00Z"}]}"#,
    );
    let good = good.as_bytes();
    for end in 0..good.len() {
        docs.push(good[..end].to_vec());
    }
    for at in 0..good.len() {
        for b in [b'"', b'{', b']', b'\\', 0x00, 0xff, b'-', b'Z'] {
            let mut d = good.to_vec();
            d[at] = b;
            docs.push(d);
        }
    }
    for doc in &docs {
        if let Err(e) = compile(doc) {
            assert!(!e.is_empty());
        }
    }
    assert!(compile(good).is_ok());
}

#[test]
fn a_non_utf8_member_is_a_syntax_error() {
    let e = compile_errs(b"{\"header\":\"x-\xff\"}");
    assert_eq!(shape_of(&e), vec![("$".to_owned(), P::Syntax)]);
}

// ---- accepted configs -----------------------------------------------------

#[test]
fn defaults() {
    let p = ok(r#"{"keys":[{"id":"cron","sha256":"@A"}]}"#);
    assert_eq!(&*p.header, "nected-api-key");
    assert_eq!(&*p.www_authenticate, "ApiKey header=\"nected-api-key\"");
    assert_eq!(p.default_auth, Auth::Private);
    assert!(p.routes.is_empty());
    assert!(p.strip_key);
    assert_eq!(p.forward_client.as_deref(), Some("x-nected-client"));
    assert!(!p.allow_cors_preflight);
    assert!(!p.require_tls);
    assert!(!p.log_requests);
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.keys.len(), 1);
    let k = &p.keys[0];
    assert_eq!(&*k.id, "cron");
    assert_eq!(p.client_name(k), "cron", "client defaults to the key's id");
    assert!(!k.revoked);
    assert_eq!((k.not_before, k.expires), (None, None));
    assert_eq!(p.by_digest.len(), 1);
}

#[test]
fn the_contract_example_compiles() {
    let text = r#"{
      "header": "nected-api-key",
      "default_auth": "private",
      "routes": [
        { "name": "health",    "path": "/healthz", "auth": "none" },
        { "name": "rules",     "prefix": "/api/v1/rules", "methods": ["POST"],
          "auth": "private", "allow_clients": ["billing"] },
        { "name": "workflows", "prefix": "/api/v1/workflows", "auth": "private" },
        { "name": "docs",      "prefix": "/docs", "hosts": ["api.example.com"], "auth": "none" }
      ],
      "keys": [
        { "id": "billing-2026-10", "client": "billing", "sha256": "@A",
          "expires": "2026-12-01T00:00:00Z" },
        { "id": "billing-2026-11", "client": "billing", "sha256": "@B",
          "not_before": "2026-11-20T00:00:00Z" },
        { "id": "cron",    "sha256": "@C" },
        { "id": "leaked",  "sha256": "@UA7", "revoked": true }
      ],
      "strip_key": true,
      "forward_client": "x-nected-client",
      "allow_cors_preflight": false,
      "require_tls": false,
      "mode": "enforce"
    }"#;
    // A fourth digest: `@UA` with its last digit changed.
    let leaked = format!("{}7", &da().to_uppercase()[..63]);
    let text = text.replace("@UA7", &leaked);
    let p = ok(&text);
    let names: Vec<&str> = p.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["health", "rules", "workflows", "docs"]);
    assert_eq!(
        p.routes[0].matcher,
        PathMatch::Exact(b"/healthz".to_vec().into())
    );
    assert_eq!(
        p.routes[1].matcher,
        PathMatch::Prefix(b"/api/v1/rules".to_vec().into())
    );
    assert_eq!(
        &*p.routes[1].methods,
        &[b"POST".to_vec().into_boxed_slice()]
    );
    assert_eq!(p.routes[0].auth, Auth::None);
    assert_eq!(p.routes[1].auth, Auth::Private);
    let clients: Vec<&str> = p.clients.iter().map(|c| &**c).collect();
    assert_eq!(clients, ["billing", "cron", "leaked"]);
    let billing = p.keys[0].client;
    assert_eq!(p.keys[1].client, billing, "rotation keeps one identity");
    assert_eq!(p.routes[1].allow_clients.as_deref(), Some(&[billing][..]));
    assert_eq!(p.routes[2].allow_clients, None);
    assert_eq!(p.keys[0].expires, Some(S_2026_12_01 * NS));
    assert_eq!(p.keys[1].not_before, Some(S_2026_11_20 * NS));
    assert!(p.keys[3].revoked);
    assert_eq!(p.by_digest.len(), 4);
    assert!(
        p.by_digest.windows(2).all(|w| w[0].1 < w[1].1),
        "sorted by digest"
    );
}

#[test]
fn good_configs_compile() {
    let name128 = "r".repeat(128);
    let id64 = "k".repeat(64);
    type Check = fn(&Policy);
    let cases: Vec<(&str, String, Check)> = vec![
        ("`{}`: every default (a fail-closed policy with no keys)", "{}".into(), |p| {
            assert_eq!(p.default_auth, Auth::Private);
            assert!(p.keys.is_empty() && p.routes.is_empty());
        }),
        ("white space around the document", " \n {\"mode\":\"report\"} \n".into(), |p| {
            assert_eq!(p.mode, Mode::Report)
        }),
        ("`header`: another lower-case token", r#"{"header":"x-api-key"}"#.into(), |p| {
            assert_eq!(&*p.header, "x-api-key");
            assert_eq!(&*p.www_authenticate, r#"ApiKey header="x-api-key""#);
            assert_eq!(p.forward_client.as_deref(), Some("x-nected-client"));
        }),
        ("`header`: token characters", r#"{"header":"x.api_key~1"}"#.into(), |p| {
            assert_eq!(&*p.header, "x.api_key~1")
        }),
        ("`default_auth`: `none`", r#"{"default_auth":"none"}"#.into(), |p| {
            assert_eq!(p.default_auth, Auth::None)
        }),
        ("`strip_key`: false", r#"{"strip_key":false}"#.into(), |p| assert!(!p.strip_key)),
        ("`forward_client`: `\"\"` turns it off", r#"{"forward_client":""}"#.into(), |p| {
            assert_eq!(p.forward_client, None)
        }),
        ("`forward_client`: another name", r#"{"header":"x-api-key","forward_client":"x-client-id"}"#.into(), |p| {
            assert_eq!(p.forward_client.as_deref(), Some("x-client-id"))
        }),
        ("`forward_client`: the default header name is free when `header` changes", r#"{"header":"x-api-key","forward_client":"nected-api-key"}"#.into(), |p| {
            assert_eq!(p.forward_client.as_deref(), Some("nected-api-key"))
        }),
        ("`allow_cors_preflight`: true", r#"{"allow_cors_preflight":true}"#.into(), |p| {
            assert!(p.allow_cors_preflight)
        }),
        ("`require_tls`: true", r#"{"require_tls":true}"#.into(), |p| assert!(p.require_tls)),
        ("`host_from`: `authority` by default", "{}".into(), |p| {
            assert_eq!(p.host_from, HostFrom::Authority)
        }),
        ("`host_from`: `authority`", r#"{"host_from":"authority"}"#.into(), |p| {
            assert_eq!(p.host_from, HostFrom::Authority)
        }),
        ("`host_from`: `host`", r#"{"host_from":"host"}"#.into(), |p| {
            assert_eq!(p.host_from, HostFrom::Host)
        }),
        ("`log_requests`: true", r#"{"log_requests":true}"#.into(), |p| assert!(p.log_requests)),
        ("`log_requests`: false", r#"{"log_requests":false}"#.into(), |p| assert!(!p.log_requests)),
        ("`mode`: `report`", r#"{"mode":"report"}"#.into(), |p| assert_eq!(p.mode, Mode::Report)),
        ("`mode`: `enforce`", r#"{"mode":"enforce"}"#.into(), |p| assert_eq!(p.mode, Mode::Enforce)),
        ("`routes[].path`: equal to the canonical path", r#"{"routes":[{"name":"a","path":"/healthz","auth":"none"}]}"#.into(), |p| {
            assert_eq!(p.routes[0].matcher, PathMatch::Exact(b"/healthz".to_vec().into()))
        }),
        ("`routes[].prefix`: `/` matches everything", r#"{"routes":[{"name":"a","prefix":"/","auth":"private"}]}"#.into(), |p| {
            assert_eq!(p.routes[0].matcher, PathMatch::Everything)
        }),
        ("`routes[].path`: `/` itself", r#"{"routes":[{"name":"a","path":"/","auth":"none"}]}"#.into(), |p| {
            assert_eq!(p.routes[0].matcher, PathMatch::Exact(b"/".to_vec().into()))
        }),
        ("`routes[].prefix`: whole segments", r#"{"routes":[{"name":"a","prefix":"/api/v1/rules","auth":"private"}]}"#.into(), |p| {
            assert_eq!(p.routes[0].matcher, PathMatch::Prefix(b"/api/v1/rules".to_vec().into()))
        }),
        ("canonical: reserved characters escaped with upper-case hex", r#"{"routes":[{"name":"a","path":"/a%3Ab/caf%C3%A9","auth":"none"}]}"#.into(), |p| {
            // Stored as requests are compared: every escape but `%25` decoded.
            assert_eq!(p.routes[0].matcher, PathMatch::Exact("/a:b/caf\u{e9}".as_bytes().to_vec().into()))
        }),
        ("canonical: dots inside names, `.well-known`", r#"{"routes":[{"name":"a","prefix":"/.well-known/a..b/...","auth":"none"}]}"#.into(), |p| {
            assert_eq!(p.routes.len(), 1)
        }),
        ("canonical: `~` and other raw characters", r#"{"routes":[{"name":"a","prefix":"/~user/a:b@c!$&'()*+=","auth":"none"}]}"#.into(), |p| {
            assert_eq!(p.routes.len(), 1)
        }),
        ("`routes[].methods`: upper-case methods, GET brings HEAD", r#"{"routes":[{"name":"a","path":"/a","methods":["GET","POST","PURGE","M-SEARCH"],"auth":"none"}]}"#.into(), |p| {
            let m: Vec<&[u8]> = p.routes[0].methods.iter().map(|m| &**m).collect();
            assert_eq!(m, [&b"GET"[..], b"POST", b"PURGE", b"M-SEARCH", b"HEAD"]);
        }),
        ("`routes[].hosts`: names, IPs, wildcards, compared lower-case", r#"{"routes":[{"name":"a","path":"/a","hosts":["API.Example.com","*.Example.COM","10.0.0.1","[::1]","localhost"],"auth":"none"}]}"#.into(), |p| {
            use crate::host::HostPattern;
            assert_eq!(&*p.routes[0].hosts, &[
                HostPattern::Exact(b"api.example.com".to_vec().into()),
                HostPattern::Suffix(b".example.com".to_vec().into()),
                HostPattern::Exact(b"10.0.0.1".to_vec().into()),
                HostPattern::Exact(b"[::1]".to_vec().into()),
                HostPattern::Exact(b"localhost".to_vec().into()),
            ]);
        }),
        ("`routes[].allow_clients`: clients holding a key, repeated names once", r#"{"keys":[{"id":"b1","client":"billing","sha256":"@A"},{"id":"cron","sha256":"@B"}],"routes":[{"name":"a","path":"/a","auth":"private","allow_clients":["cron","billing","cron"]}]}"#.into(), |p| {
            let want = [p.keys[1].client, p.keys[0].client];
            assert_eq!(p.routes[0].allow_clients.as_deref(), Some(&want[..]));
        }),
        ("`routes[].allow_clients`: a key's id is its client by default", r#"{"keys":[{"id":"cron","sha256":"@B"}],"routes":[{"name":"a","path":"/a","auth":"private","allow_clients":["cron"]}]}"#.into(), |p| {
            assert_eq!(p.routes[0].allow_clients.as_deref(), Some(&[p.keys[0].client][..]));
        }),
        ("`routes[].allow_clients`: a revoked key's client counts as holding a key", r#"{"keys":[{"id":"old","client":"legacy","sha256":"@A","revoked":true}],"routes":[{"name":"a","path":"/a","auth":"private","allow_clients":["legacy"]}]}"#.into(), |p| {
            assert_eq!(p.routes[0].allow_clients.as_deref().map(<[_]>::len), Some(1));
        }),
        ("`routes[].name`: 128 characters, any Unicode", format!(r#"{{"routes":[{{"name":"{name128}","path":"/a","auth":"none"}},{{"name":"règles ✓","path":"/b","auth":"none"}}]}}"#), |p| {
            assert_eq!(p.routes[0].name.len(), 128);
            assert_eq!(&*p.routes[1].name, "règles ✓");
        }),
        ("`keys[].id`: 64 of `[A-Za-z0-9._-]`", format!(r#"{{"keys":[{{"id":"{id64}","sha256":"@A"}},{{"id":"A.z_0-9","sha256":"@B"}}]}}"#), |p| {
            assert_eq!(p.keys[0].id.len(), 64);
            assert_eq!(&*p.keys[1].id, "A.z_0-9");
        }),
        ("`keys[].sha256`: any case", r#"{"keys":[{"id":"a","sha256":"@UA"}]}"#.into(), |p| {
            assert_eq!(p.by_digest[0].1, [0xa1; 32]);
        }),
        ("`keys[].sha256`: mixed case", format!(r#"{{"keys":[{{"id":"a","sha256":"{}"}}]}}"#, "aB".repeat(32)), |p| {
            assert_eq!(p.by_digest[0].1, [0xab; 32]);
        }),
        ("`keys[].client`: several keys may share a client", r#"{"keys":[{"id":"b1","client":"billing","sha256":"@A"},{"id":"b2","client":"billing","sha256":"@B"},{"id":"billing","sha256":"@C"}]}"#.into(), |p| {
            assert_eq!(p.clients.len(), 1, "the third key's client defaults to its id, `billing`");
            assert!(p.keys.iter().all(|k| k.client == p.keys[0].client));
        }),
        ("`keys[].revoked`", r#"{"keys":[{"id":"a","sha256":"@A","revoked":true},{"id":"b","sha256":"@B","revoked":false}]}"#.into(), |p| {
            assert!(p.keys[0].revoked && !p.keys[1].revoked)
        }),
        ("`keys[].not_before`, `expires`: RFC 3339 instants", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"2026-11-20T00:00:00Z","expires":"2026-12-01T00:00:00Z"}]}"#.into(), |p| {
            assert_eq!(p.keys[0].not_before, Some(S_2026_11_20 * NS));
            assert_eq!(p.keys[0].expires, Some(S_2026_12_01 * NS));
        }),
        ("`keys[].not_before`, `expires`: offsets and fractions", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"2026-11-20T01:30:00+01:30","expires":"2026-11-30T19:00:00.5-05:00"}]}"#.into(), |p| {
            assert_eq!(p.keys[0].not_before, Some(S_2026_11_20 * NS));
            assert_eq!(p.keys[0].expires, Some(S_2026_12_01 * NS + NS / 2));
        }),
        ("`keys[].expires` only", r#"{"keys":[{"id":"a","sha256":"@A","expires":"2026-01-01T00:00:00Z"}]}"#.into(), |p| {
            assert_eq!((p.keys[0].not_before, p.keys[0].expires), (None, Some(S_2026_01_01 * NS)));
        }),
        ("`keys[].expires` 1 ns after `not_before`", r#"{"keys":[{"id":"a","sha256":"@A","not_before":"2026-12-01T00:00:00Z","expires":"2026-12-01T00:00:00.000000001Z"}]}"#.into(), |p| {
            assert_eq!(p.keys[0].expires, Some(S_2026_12_01 * NS + 1));
        }),
    ];
    for (name, json, check) in &cases {
        let p = ok(json);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&p)));
        assert!(run.is_ok(), "case {name:?} failed its check");
    }
}

#[test]
fn an_upper_case_digest_finds_its_key() {
    let digest = sha_hex(b"my-key-value-0123456789").to_uppercase();
    let p = ok(&format!(r#"{{"keys":[{{"id":"a","sha256":"{digest}"}}]}}"#));
    assert_eq!(
        p.lookup(b"my-key-value-0123456789").map(|k| &*k.id),
        Some("a")
    );
    assert!(p.lookup(b"my-key-value-012345678").is_none());
    assert!(p.lookup(b"MY-KEY-VALUE-0123456789").is_none());
}

#[test]
fn lookup_finds_every_key_among_many() {
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i:04}-value")).collect();
    let entries: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!(r#"{{"id":"k{i}","sha256":"{}"}}"#, sha_hex(k.as_bytes())))
        .collect();
    let p = ok(&format!(r#"{{"keys":[{}]}}"#, entries.join(",")));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            p.lookup(k.as_bytes()).map(|k| k.id.to_string()),
            Some(format!("k{i}"))
        );
    }
    assert!(p.lookup(b"key-0300-value").is_none());
    assert!(p.lookup(b"").is_none());
}

#[test]
fn fingerprint_is_the_first_12_hex_of_the_sha256_of_the_canonical_form() {
    for (text, canonical) in [
        ("{}", "{}"),
        ("{ }", "{}"),
        ("\n{}\n", "{}"),
        (r#"{"mode":"report"}"#, r#"{"mode":"report"}"#),
        (
            "{ \"require_tls\": false,\n  \"mode\" : \"rep\\u006frt\" }",
            r#"{"mode":"report","require_tls":false}"#,
        ),
        (
            &fill(r#"{"keys":[{"sha256":"@A","id":"a"}], "header": "x-key"}"#),
            &fill(r#"{"header":"x-key","keys":[{"id":"a","sha256":"@A"}]}"#),
        ),
    ] {
        let p = compile(text.as_bytes()).unwrap();
        let want = &sha_hex(canonical.as_bytes())[..12];
        assert_eq!(p.fingerprint, want, "{text:?}");
        assert_eq!(p.fingerprint.len(), 12);
        assert!(p
            .fingerprint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    assert_ne!(
        compile(br#"{"mode":"report"}"#).unwrap().fingerprint,
        compile(br#"{"mode":"enforce"}"#).unwrap().fingerprint,
    );
}

#[test]
fn summary_counts_at_a_fixed_now() {
    let now = S_2026_11_25 * NS;
    let text = r#"{"keys":[
        {"id":"unbounded","sha256":"@A"},
        {"id":"revoked","sha256":"@B","revoked":true},
        {"id":"revoked-and-expired","sha256":"@C","revoked":true,"expires":"2026-01-01T00:00:00Z"},
        {"id":"revoked-expiring","sha256":"D1","revoked":true,"expires":"2026-11-27T00:00:00Z"},
        {"id":"expired","sha256":"D2","expires":"2026-11-24T00:00:00Z"},
        {"id":"expires-now","sha256":"D3","expires":"2026-11-25T00:00:00Z"},
        {"id":"expiring-1d","sha256":"D4","expires":"2026-11-26T00:00:00Z"},
        {"id":"expiring-6d","sha256":"D5","client":"billing","expires":"2026-12-01T00:00:00Z"},
        {"id":"valid-8d","sha256":"D6","client":"billing","expires":"2026-12-03T00:00:00Z"},
        {"id":"not-yet-valid","sha256":"D7","not_before":"2026-11-26T00:00:00Z"},
        {"id":"not-yet-valid-expiring","sha256":"D8","not_before":"2026-11-26T00:00:00Z","expires":"2026-11-28T00:00:00Z"},
        {"id":"valid-since","sha256":"D9","not_before":"2026-11-25T00:00:00Z"}
    ],
    "routes":[{"name":"a","path":"/a","auth":"none"},{"name":"b","prefix":"/b","auth":"private"}]}"#;
    let mut text = text.to_owned();
    for i in 1..=9 {
        text = text.replace(
            &format!("\"D{i}\""),
            &format!("\"{}\"", format!("d{i}").repeat(32)),
        );
    }
    let p = ok(&text);
    let s = p.summary(now);
    assert_eq!(
        s,
        Summary {
            routes: 2,
            keys: 12,
            clients: 11,
            revoked: 3,
            expired: 2,
            not_yet_valid: 2,
            expiring_7d: 3,
        }
    );
    // A week later: expiring-6d and not-yet-valid-expiring have expired too.
    let s = p.summary(now + 7 * DAY);
    assert_eq!(
        (s.revoked, s.expired, s.not_yet_valid, s.expiring_7d),
        (3, 5, 0, 1)
    );
}

#[test]
fn parse_instant_is_rfc3339_to_unix_nanoseconds() {
    let cases: &[(&str, Option<i128>)] = &[
        ("2026-12-01T00:00:00Z", Some(S_2026_12_01 * NS)),
        ("2026-12-01T00:00:00+00:00", Some(S_2026_12_01 * NS)),
        ("2026-12-01T02:00:00+02:00", Some(S_2026_12_01 * NS)),
        ("2026-11-30T22:00:00-02:00", Some(S_2026_12_01 * NS)),
        ("2026-12-01T00:00:00.25Z", Some(S_2026_12_01 * NS + NS / 4)),
        ("1970-01-01T00:00:00Z", Some(0)),
        ("2026-12-01", None),
        ("2026-12-01T00:00:00", None),
        ("2026-02-30T00:00:00Z", None),
        ("2026-12-01T24:00:01Z", None),
        ("", None),
        ("now", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_instant(text), *want, "{text:?}");
    }
}

#[test]
fn fold_eq_reads_underscore_as_dash_and_ignores_case() {
    let cases: &[(&str, &str, bool)] = &[
        ("x-nected-client", "x-nected-client", true),
        ("x_nected_client", "x-nected-client", true),
        ("X_Nected-CLIENT", "x-nected-client", true),
        ("x-nected-clien", "x-nected-client", false),
        ("x-nected-clientx", "x-nected-client", false),
        ("x.nected.client", "x-nected-client", false),
        ("", "", true),
    ];
    for (a, b, want) in cases {
        assert_eq!(fold_eq(a.as_bytes(), b.as_bytes()), *want, "{a} vs {b}");
        assert_eq!(fold_eq(b.as_bytes(), a.as_bytes()), *want, "{b} vs {a}");
    }
}
