//! `nected-key`: operator tooling for nected-key-auth, on the filter's own
//! parser and compiler.
//!
//!   nected-key new --id ID [--client NAME] [--not-before T] [--expires T]
//!   nected-key hash [KEY]
//!   nected-key check FILE
//!   nected-key schema

use nected_key_auth::config::{self, hex, parse_instant, ID};
use nected_key_auth::policy::{Auth, KeyState, Policy};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
nected-key: keys and configuration for the nected-key-auth gateway filter

usage:
  nected-key new --id ID [--client NAME] [--not-before RFC3339] [--expires RFC3339]
      print a new random key (256 bits, [A-Za-z0-9_-]) and its keys[] entry
  nected-key hash [KEY | -]
      print the lowercase hex SHA-256 of KEY, or of stdin (no KEY, or -)
      without its trailing newline, \n or \r\n (prefer stdin: arguments
      end up in shell history)
  nected-key check FILE
      validate a plugin configuration (FILE or - for stdin) with the
      filter's own parser; exit 0 with a summary, or 1 with every error
  nected-key schema
      print the JSON Schema of the plugin configuration
";

/// Prefix of generated keys: recognizable in secret scanners and logs.
const KEY_PREFIX: &str = "nk_";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (Some(c.as_str()), rest),
        None => (None, &[][..]),
    };
    let result = match command {
        Some("new") => new_key(rest),
        Some("hash") => hash(rest),
        Some("check") => check(rest),
        Some("schema") => schema(rest),
        Some("-h" | "--help" | "help") => {
            out(USAGE);
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Usage("expected a command".into())),
    };
    match result {
        Ok(code) => code,
        Err(Usage(message)) => {
            eprintln!("nected-key: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

struct Usage(String);

fn unix_nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn new_key(args: &[String]) -> Result<ExitCode, Usage> {
    let mut id = None;
    let mut client = None;
    let mut not_before = None;
    let mut expires = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--id" => &mut id,
            "--client" => &mut client,
            "--not-before" => &mut not_before,
            "--expires" => &mut expires,
            other => return Err(Usage(format!("new: unknown argument {other:?}"))),
        };
        let value = it
            .next()
            .ok_or_else(|| Usage(format!("new: {flag} needs a value")))?;
        *slot = Some(value.clone());
    }
    let id = id.ok_or_else(|| Usage("new: --id is required".into()))?;
    for (flag, value) in [("--id", Some(&id)), ("--client", client.as_ref())] {
        if let Some(v) = value {
            if v.is_empty() || v.len() > 64 || !(ID.check)(v) {
                return Err(Usage(format!("new: {flag} must be {}", ID.what)));
            }
        }
    }
    let mut bounds = Vec::new();
    for (flag, name, value) in [
        ("--not-before", "not_before", &not_before),
        ("--expires", "expires", &expires),
    ] {
        if let Some(v) = value {
            let t = parse_instant(v).ok_or_else(|| {
                Usage(format!(
                    "new: {flag} must be an RFC 3339 instant such as 2026-12-01T00:00:00Z"
                ))
            })?;
            bounds.push((name, v, t));
        }
    }
    if let [(_, _, nb), (_, _, ex)] = bounds[..] {
        if ex <= nb {
            return Err(Usage("new: --expires must be after --not-before".into()));
        }
    }

    let mut random = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut random) {
        eprintln!("nected-key: no random source: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let key = format!("{KEY_PREFIX}{}", base64url(&random));
    let mut entry = format!("{{\"id\": {}", json_string(&id));
    if let Some(c) = &client {
        entry += &format!(", \"client\": {}", json_string(c));
    }
    entry += &format!(", \"sha256\": \"{}\"", hex(&Sha256::digest(key.as_bytes())));
    for (name, text, _) in &bounds {
        entry += &format!(", \"{name}\": {}", json_string(text));
    }
    entry += "}";
    out(&format!("{key}\n{entry}\n"));
    eprintln!(
        "nected-key: line 1 is the key: it is shown only now; store it in a secret manager.\n\
         nected-key: line 2 is its entry for the plugin configuration's \"keys\" list."
    );
    Ok(ExitCode::SUCCESS)
}

fn hash(args: &[String]) -> Result<ExitCode, Usage> {
    let bytes = match args {
        [] | [_] if args.first().is_none_or(|a| a == "-") => {
            let mut input = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut input) {
                eprintln!("nected-key: reading stdin: {e}");
                return Ok(ExitCode::FAILURE);
            }
            if input.last() == Some(&b'\n') {
                input.pop();
                if input.last() == Some(&b'\r') {
                    input.pop();
                }
            }
            input
        }
        [key] => key.as_bytes().to_vec(),
        _ => return Err(Usage("hash: takes at most one KEY".into())),
    };
    out(&format!("{}\n", hex(&Sha256::digest(&bytes))));
    Ok(ExitCode::SUCCESS)
}

fn check(args: &[String]) -> Result<ExitCode, Usage> {
    let [file] = args else {
        return Err(Usage(
            "check: takes exactly one FILE (or - for stdin)".into(),
        ));
    };
    let mut bytes = Vec::new();
    let read = if file == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(file).map(|b| bytes = b)
    };
    if let Err(e) = read {
        out(&format!("{file}: cannot read: {e}\n"));
        return Ok(ExitCode::FAILURE);
    }
    match config::compile(&bytes) {
        Ok(policy) => {
            print_summary(file, &policy);
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors {
                out(&format!("{file}: error: {e}\n"));
            }
            out(&format!(
                "{file}: invalid: {} error{}
",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_summary(file: &str, policy: &Policy) {
    let s = policy.summary(unix_nanos_now());
    let public = policy
        .routes
        .iter()
        .filter(|r| r.auth == Auth::None)
        .count();
    let auth = |a: Auth| if a == Auth::None { "none" } else { "private" };
    let mut out = String::new();
    out += &format!("{file}: valid (config {})\n", policy.fingerprint);
    out += &format!(
        "  mode {}, header {}, default_auth {}, forward_client {}, strip_key {}, require_tls {}, allow_cors_preflight {}\n",
        policy.mode.as_str(),
        policy.header,
        auth(policy.default_auth),
        policy.forward_client.as_deref().unwrap_or("(off)"),
        policy.strip_key,
        policy.require_tls,
        policy.allow_cors_preflight,
    );
    out += &format!(
        "  routes {} ({} public, {} private)\n",
        s.routes,
        public,
        s.routes - public
    );
    out += &format!(
        "  keys {}: revoked {}, expired {}, not yet valid {}, expiring within 7 days {}\n",
        s.keys, s.revoked, s.expired, s.not_yet_valid, s.expiring_7d
    );
    out += &format!("  clients {}:", s.clients);
    for c in policy.clients.iter() {
        out += &format!(" {c}");
    }
    out.push('\n');
    let now = unix_nanos_now();
    for key in policy.keys.iter() {
        let state = match key.state(Some(now)) {
            KeyState::Valid => continue,
            KeyState::Revoked => "revoked",
            KeyState::NotYetValid => "not yet valid",
            KeyState::Expired => "expired",
        };
        out += &format!("  key {} ({}): {state}\n", key.id, policy.client_name(key));
    }
    if policy.default_auth == Auth::None && policy.routes.iter().any(|r| r.auth == Auth::Private) {
        out += &format!(
            "{file}: warning: $.default_auth is \"none\": every request that misses the private routes is public, \
             including other spellings of their paths (case, a trailing '/' after an exact path, \
             a suffix such as /admin.); prefer \"private\" and list the public routes\n"
        );
    }
    for (later, earlier) in policy.shadowed_routes() {
        let name = |i: usize| policy.routes.get(i).map_or("", |r| &*r.name);
        out += &format!(
            "{file}: warning: $.routes[{later}] ({:?}) can never match: $.routes[{earlier}] ({:?}) matches every request it would\n",
            name(later),
            name(earlier)
        );
    }
    self::out(&out);
}

fn schema(args: &[String]) -> Result<ExitCode, Usage> {
    if !args.is_empty() {
        return Err(Usage("schema: takes no arguments".into()));
    }
    out(&nected_key_auth::schema::json_schema_text());
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Unpadded base64url (RFC 4648 §5): only `[A-Za-z0-9_-]`.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(
                ALPHABET.get(index as usize).copied().unwrap_or(b'A'),
            ));
        }
    }
    out
}
