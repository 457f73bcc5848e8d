//! `nected-key`: operator tooling for nected-key-auth, on the filter's own
//! parser and compiler. `nected-key help` lists the commands.

use nected_key_auth::cli::edit::{self, ConfigFile, EditError, Members};
use nected_key_auth::cli::render::{self, Gateway};
use nected_key_auth::cli::{usage, when};
use nected_key_auth::config::{self, hex, ID};
use nected_key_auth::json::Node;
use nected_key_auth::policy::{Auth, HostFrom, KeyState, Policy};
use nected_key_auth::shape::ConfigError;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const USAGE: &str = "\
nected-key: keys and configuration for the nected-key-auth gateway filter

usage: nected-key COMMAND [ARGUMENTS]
       nected-key help COMMAND      (or COMMAND --help) for one command

keys:
  new      print a new random key and its entry for the \"keys\" list
  hash     print the SHA-256 of a key, as the \"sha256\" of its entry
configuration files (edited in place, checked before they are written):
  add      add a new key; print the key
  revoke   mark a key revoked
  rotate   give a key's client a new key; the old one expires after an overlap
  list     every key with its client, state and window
checking and deploying:
  check    validate a plugin configuration, plain JSON or a rendered file
  render   the configuration in the file and field a gateway reads
  usage    per-key counters of a running Envoy: which keys are still in use
  schema   print the JSON Schema of the plugin configuration

  --version, --help
exit status: 0 success, 1 invalid input or configuration, 2 usage error
times T: RFC 3339 (2026-12-01T00:00:00Z), now, or now+<n><s|m|h|d> (now+90d);
durations D: <n><s|m|h|d> (7d)
";

struct Command {
    name: &'static str,
    help: &'static str,
    run: fn(&Args) -> Result<ExitCode, Usage>,
    /// Flags that take a value.
    values: &'static [&'static str],
    /// Flags without a value.
    switches: &'static [&'static str],
    /// Positional arguments: (min, max).
    positional: (usize, usize),
}

const COMMANDS: &[Command] = &[
    Command {
        name: "new",
        help: "\
usage: nected-key new --id ID [--client C] [--not-before T] [--expires T]

Prints a new random key (256 bits, `nk_` and 43 of [A-Za-z0-9_-]) on line 1
and its entry for the configuration's \"keys\" list on line 2. The key is
shown only now and stored nowhere: keep it in a secret manager. A window
already over (--expires in the past) is refused. `add` does the same and
writes the entry into a configuration file.
",
        run: new_key,
        values: &["--id", "--client", "--not-before", "--expires"],
        switches: &[],
        positional: (0, 0),
    },
    Command {
        name: "hash",
        help: "\
usage: nected-key hash [KEY | -]

Prints the lowercase hex SHA-256 of KEY, or of stdin (no KEY, or -) without
its trailing newline (\\n or \\r\\n). Prefer stdin: arguments end up in shell
history. `nected-key hash -- KEY` hashes a KEY that starts with `-`.
",
        run: hash,
        values: &[],
        switches: &[],
        positional: (0, 1),
    },
    Command {
        name: "check",
        help: "\
usage: nected-key check FILE

Validates a plugin configuration (FILE, or - for stdin) with the filter's own
parser: exit 0 and a summary with the config fingerprint, or exit 1 and every
error with its JSON path (on stderr). FILE may also be a file written by
`nected-key render` (or an Envoy bootstrap): every configuration embedded
in it is checked, from the field the gateway reads.
",
        run: check,
        values: &[],
        switches: &[],
        positional: (1, 1),
    },
    Command {
        name: "add",
        help: "\
usage: nected-key add --config FILE --id ID [--client C] [--not-before T] [--expires T]

Adds a new random key to the configuration FILE and prints the key alone on
stdout (shown only now, stored nowhere). The client defaults to the id. An
existing id, and a window already over, are refused. FILE is checked before
and after the change, keeps its other members in their order, and is
replaced atomically (temporary file, then rename).
",
        run: add,
        values: &["--config", "--id", "--client", "--not-before", "--expires"],
        switches: &[],
        positional: (0, 0),
    },
    Command {
        name: "revoke",
        help: "\
usage: nected-key revoke --config FILE ID

Sets `revoked: true` on the key ID in FILE (atomically, checked first). A
revoked key is refused at once, also on connections opened before the
change; `nected-key usage` shows whether it is still being presented.
",
        run: revoke,
        values: &["--config"],
        switches: &[],
        positional: (1, 1),
    },
    Command {
        name: "rotate",
        help: "\
usage: nected-key rotate --config FILE ID --id NEW_ID [--overlap D]

Adds a new key NEW_ID for the client of key ID, valid from now, and sets
ID's `expires` to now + D (default 7d; an earlier `expires` is kept), so both
work during the overlap. Prints the new key alone on stdout. Make the overlap
longer than the clock skew between gateways and the time clients need to
switch; check `nected-key usage` before it ends.
",
        run: rotate,
        values: &["--config", "--id", "--overlap"],
        switches: &[],
        positional: (1, 1),
    },
    Command {
        name: "list",
        help: "\
usage: nected-key list --config FILE [--json]

Every key of FILE with its client, state (valid, revoked, expired,
not_yet_valid) and window; `!` marks a key that expires within 7 days.
",
        run: list,
        values: &["--config"],
        switches: &["--json"],
        positional: (0, 0),
    },
    Command {
        name: "render",
        help: "\
usage: nected-key render --gateway G [--config FILE]

Prints the plugin configuration (FILE, or stdin) embedded in the file and
field gateway G reads, in the form it expects, so nobody pastes JSON into
YAML by hand. G is one of:
  envoy          the Wasm HTTP filter entry for an HttpConnectionManager
  envoy-ecds     an ECDS resource file (TypedExtensionConfig)
  istio          a WasmPlugin (Istio 1.19 or later)
  envoy-gateway  an EnvoyExtensionPolicy (Envoy Gateway v1.1.0 or later)
  kong           a Kong declarative config with a filter chain
  apisix         an APISIX Admin API route body
The configuration is checked first; `check` accepts the output as it is and
shows the same fingerprint. For kong, a configuration without
`host_from: host` gets a note on stderr: Kong's :authority is nginx's
server_name, not the client's host.
",
        run: render_cmd,
        values: &["--gateway", "--config"],
        switches: &[],
        positional: (0, 0),
    },
    Command {
        name: "usage",
        help: "\
usage: nected-key usage --admin URL [--config FILE] [--json]

Reads a running Envoy's admin /stats (URL like http://127.0.0.1:9901) and
shows, per key, the requests it passed and those where it was presented but
refused, counted since Envoy started. With --config, also each key's state,
and flags revoked or expired keys still being presented (a client that has
not switched) and valid keys never seen (safe to revoke?).
",
        run: usage_cmd,
        values: &["--admin", "--config"],
        switches: &["--json"],
        positional: (0, 0),
    },
    Command {
        name: "schema",
        help: "\
usage: nected-key schema

Prints the JSON Schema (draft 2020-12) of the plugin configuration, for
editors; `check` remains the authority.
",
        run: schema,
        values: &[],
        switches: &[],
        positional: (0, 0),
    },
];

/// Prefix of generated keys: recognizable in secret scanners and logs.
const KEY_PREFIX: &str = "nk_";

/// A usage error: exit 2 with the command's help hint.
struct Usage(String);

/// Parsed arguments of one command.
struct Args {
    command: &'static str,
    values: Vec<(&'static str, String)>,
    switches: Vec<&'static str>,
    positional: Vec<String>,
}

impl Args {
    fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, flag: &str) -> Result<&str, Usage> {
        self.value(flag)
            .ok_or_else(|| Usage(format!("{}: {flag} is required", self.command)))
    }

    fn switch(&self, flag: &str) -> bool {
        self.switches.contains(&flag)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((first, rest)) = args.split_first() else {
        eprint!("nected-key: expected a command\n\n{USAGE}");
        return ExitCode::from(2);
    };
    match first.as_str() {
        "-h" | "--help" => {
            out(USAGE);
            return ExitCode::SUCCESS;
        }
        "-V" | "--version" => {
            out(&format!("nected-key {VERSION}\n"));
            return ExitCode::SUCCESS;
        }
        "help" => {
            return match rest {
                [] => {
                    out(USAGE);
                    ExitCode::SUCCESS
                }
                [name] => match find(name) {
                    Some(c) => {
                        out(c.help);
                        ExitCode::SUCCESS
                    }
                    None => usage_error(None, &format!("no command {name:?}")),
                },
                _ => usage_error(None, "help takes one COMMAND"),
            };
        }
        _ => {}
    }
    let Some(command) = find(first) else {
        return usage_error(None, &format!("unknown command {first:?}"));
    };
    if rest
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
    {
        out(command.help);
        return ExitCode::SUCCESS;
    }
    match parse_args(command, rest).and_then(|args| (command.run)(&args)) {
        Ok(code) => code,
        Err(Usage(message)) => usage_error(Some(command), &message),
    }
}

fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

fn usage_error(command: Option<&Command>, message: &str) -> ExitCode {
    match command {
        Some(c) => eprint!("nected-key: {message}\n\n{}", c.help),
        None => eprint!("nected-key: {message}\n\n{USAGE}"),
    }
    ExitCode::from(2)
}

fn parse_args(command: &'static Command, raw: &[String]) -> Result<Args, Usage> {
    let mut args = Args {
        command: command.name,
        values: Vec::new(),
        switches: Vec::new(),
        positional: Vec::new(),
    };
    let mut it = raw.iter();
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        if only_positional || !arg.starts_with('-') || arg == "-" {
            args.positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        if let Some(&name) = command.values.iter().find(|f| **f == flag) {
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| Usage(format!("{}: {flag} needs a value", command.name)))?,
            };
            if args.value(name).is_some() {
                return Err(Usage(format!("{}: {flag} given twice", command.name)));
            }
            args.values.push((name, value));
        } else if let (Some(&name), None) = (command.switches.iter().find(|f| **f == flag), &inline)
        {
            args.switches.push(name);
        } else {
            return Err(Usage(format!("{}: unknown option {flag:?}", command.name)));
        }
    }
    let (min, max) = command.positional;
    let n = args.positional.len();
    if n < min || n > max {
        let what = match (min, max) {
            (0, 0) => "no arguments besides its options".to_owned(),
            (a, b) if a == b => format!("exactly {a} argument{}", if a == 1 { "" } else { "s" }),
            (_, b) => format!("at most {b} argument{}", if b == 1 { "" } else { "s" }),
        };
        return Err(Usage(format!("{}: takes {what}", command.name)));
    }
    Ok(args)
}

/// An error that is not a usage error: on stderr, exit 1.
fn fail(message: &str) -> Result<ExitCode, Usage> {
    eprintln!("nected-key: {message}");
    Ok(ExitCode::FAILURE)
}

fn print_config_errors(file: &str, errors: &[ConfigError]) {
    let mut text = String::new();
    for e in errors {
        text += &format!("{file}: error: {e}\n");
    }
    text += &format!(
        "{file}: invalid: {} error{}\n",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    err(&text);
}

fn edit_failed(file: &str, e: EditError) -> Result<ExitCode, Usage> {
    match e {
        EditError::Io(message) => fail(&message),
        EditError::Refused(message) => fail(&format!("{file}: {message}")),
        EditError::Invalid(errors) => {
            print_config_errors(file, &errors);
            fail(&format!("{file}: left unchanged"))
        }
    }
}

// ---- keys -------------------------------------------------------------------

/// A key's id or client, checked like the configuration does.
fn check_name(command: &str, flag: &str, value: &str) -> Result<(), Usage> {
    if value.is_empty() || value.len() > 64 || !(ID.check)(value) {
        return Err(Usage(format!("{command}: {flag} must be {}", ID.what)));
    }
    Ok(())
}

/// `--not-before` and `--expires` as (member, RFC 3339 text, nanos).
type Window = Vec<(&'static str, String, i128)>;

/// The window of a new key; `Err(Ok(message))` for a window already over.
fn window(args: &Args, now: i128) -> Result<Result<Window, String>, Usage> {
    let mut bounds = Vec::new();
    for (flag, name) in [("--not-before", "not_before"), ("--expires", "expires")] {
        let Some(v) = args.value(flag) else {
            continue;
        };
        let t = when::parse_instant(v, now).ok_or_else(|| {
            Usage(format!(
                "{}: {flag} must be RFC 3339 (2026-12-01T00:00:00Z), now, or now+<n><s|m|h|d>",
                args.command
            ))
        })?;
        let text = if v.starts_with("now") {
            when::rfc3339(t)
        } else {
            v.to_owned()
        };
        bounds.push((name, text, t));
    }
    if let [(_, _, nb), (_, _, ex)] = bounds[..] {
        if ex <= nb {
            return Ok(Err("--expires must be after --not-before".into()));
        }
    }
    if let Some((_, text, t)) = bounds.iter().find(|(n, _, _)| *n == "expires") {
        if *t <= now {
            return Ok(Err(format!(
                "--expires {text} is already over: the key would never work"
            )));
        }
    }
    Ok(Ok(bounds))
}

fn random_key() -> Result<String, String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("no random source: {e}"))?;
    Ok(format!("{KEY_PREFIX}{}", base64url(&random)))
}

/// The `keys` entry of a new key, members in the documented order.
fn entry(id: &str, client: Option<&str>, key: &str, window: &Window) -> Node<'static> {
    let mut members: Members<'static> = vec![("id".into(), edit::text(id))];
    if let Some(c) = client {
        members.push(("client".into(), edit::text(c)));
    }
    members.push((
        "sha256".into(),
        edit::text(hex(&Sha256::digest(key.as_bytes()))),
    ));
    for (name, text, _) in window {
        members.push(((*name).into(), edit::text(text.clone())));
    }
    Node::Object(members)
}

fn new_key(args: &Args) -> Result<ExitCode, Usage> {
    let id = args.required("--id")?;
    check_name("new", "--id", id)?;
    if let Some(c) = args.value("--client") {
        check_name("new", "--client", c)?;
    }
    let window = match window(args, when::now())? {
        Ok(w) => w,
        Err(message) => return fail(&format!("new: {message}")),
    };
    let key = match random_key() {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let entry = entry(id, args.value("--client"), &key, &window);
    let entry = nected_key_auth::cli::pretty::one_line(&entry).unwrap_or_default();
    out(&format!("{key}\n{entry}\n"));
    err(
        "nected-key: line 1 is the key: it is shown only now; store it in a secret manager.\n\
         nected-key: line 2 is its entry for the plugin configuration's \"keys\" list\n\
         (or let `nected-key add --config FILE` write it there).\n",
    );
    Ok(ExitCode::SUCCESS)
}

fn hash(args: &Args) -> Result<ExitCode, Usage> {
    let bytes = match args.positional.first().map(String::as_str) {
        None | Some("-") => {
            let mut input = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut input) {
                return fail(&format!("reading stdin: {e}"));
            }
            if input.last() == Some(&b'\n') {
                input.pop();
                if input.last() == Some(&b'\r') {
                    input.pop();
                }
            }
            input
        }
        Some(key) => key.as_bytes().to_vec(),
    };
    out(&format!("{}\n", hex(&Sha256::digest(&bytes))));
    Ok(ExitCode::SUCCESS)
}

// ---- check ------------------------------------------------------------------

/// The configurations in a file: the file itself when it is plain JSON, or
/// each one embedded in a rendered gateway file. `Err` holds what to say
/// when neither.
fn configurations(bytes: &[u8]) -> Vec<(Option<String>, Vec<u8>)> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Some(found) = render::embedded(text) {
            if !found.is_empty() {
                return found.into_iter().map(|e| (Some(e.at), e.bytes)).collect();
            }
        }
    }
    vec![(None, bytes.to_vec())]
}

/// A hint for a file that is YAML but carries no configuration we know.
fn yaml_hint(bytes: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(bytes).ok()?;
    if Node::parse(bytes).is_ok() {
        return None;
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    value.is_mapping().then_some(
        "this looks like YAML, but no plugin configuration was found in the fields a \
         gateway reads: `check` takes plain JSON, or a file written by `nected-key render` \
         (Envoy filter or bootstrap, ECDS resource, Istio WasmPlugin, Envoy Gateway \
         EnvoyExtensionPolicy, Kong declarative config, APISIX route)",
    )
}

fn read_input(file: &str) -> Result<Vec<u8>, String> {
    if file == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(bytes)
    } else {
        std::fs::read(file).map_err(|e| format!("{file}: cannot read: {e}"))
    }
}

fn check(args: &Args) -> Result<ExitCode, Usage> {
    let file = args.positional.first().map_or("-", String::as_str);
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let mut ok = true;
    for (at, config) in configurations(&bytes) {
        let name = match &at {
            Some(at) => format!("{file} ({at})"),
            None => file.to_owned(),
        };
        match config::compile(&config) {
            Ok(policy) => print_summary(&name, &policy),
            Err(errors) => {
                ok = false;
                print_config_errors(&name, &errors);
                if at.is_none() {
                    if let Some(hint) = yaml_hint(&bytes) {
                        err(&format!("{name}: hint: {hint}\n"));
                    }
                }
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(file: &str, policy: &Policy) {
    let now = when::now();
    let s = policy.summary(now);
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

// ---- lifecycle --------------------------------------------------------------

fn add(args: &Args) -> Result<ExitCode, Usage> {
    let file = args.required("--config")?;
    let id = args.required("--id")?;
    check_name("add", "--id", id)?;
    let client = args.value("--client");
    if let Some(c) = client {
        check_name("add", "--client", c)?;
    }
    let now = when::now();
    let window = match window(args, now)? {
        Ok(w) => w,
        Err(message) => return fail(&format!("add: {message}")),
    };
    let config = match ConfigFile::read(Path::new(file)) {
        Ok(c) => c,
        Err(e) => return edit_failed(file, e),
    };
    let key = match random_key() {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let new = entry(id, client, &key, &window);
    let result = config.edit(|m| {
        if edit::key_mut(m, id).is_some() {
            return Err(EditError::Refused(format!(
                "a key with id {id:?} exists already; choose another id"
            )));
        }
        edit::keys(m)
            .ok_or_else(|| EditError::Refused("\"keys\" is not a list".into()))?
            .push(new);
        Ok(())
    });
    let text = match result {
        Ok(t) => t,
        Err(e) => return edit_failed(file, e),
    };
    if let Err(e) = edit::write_atomically(Path::new(file), &text) {
        return edit_failed(file, e);
    }
    out(&format!("{key}\n"));
    err(&format!(
        "nected-key: added key {id} (client {}) to {file}{}; config {}.\n\
         nected-key: the key above is shown only now: store it in a secret manager.\n",
        client.unwrap_or(id),
        describe_window(&window),
        fingerprint(&text)
    ));
    Ok(ExitCode::SUCCESS)
}

fn describe_window(window: &Window) -> String {
    window
        .iter()
        .map(|(name, text, _)| format!(", {name} {text}"))
        .collect()
}

fn fingerprint(text: &str) -> String {
    config::compile(text.as_bytes()).map_or_else(|_| "?".into(), |p| p.fingerprint.to_string())
}

fn revoke(args: &Args) -> Result<ExitCode, Usage> {
    let file = args.required("--config")?;
    let id = args.positional.first().map_or("", String::as_str);
    let config = match ConfigFile::read(Path::new(file)) {
        Ok(c) => c,
        Err(e) => return edit_failed(file, e),
    };
    let mut already = false;
    let result = config.edit(|m| {
        let key = edit::key_mut(m, id)
            .ok_or_else(|| EditError::Refused(format!("no key with id {id:?}")))?;
        already = key
            .iter()
            .any(|(n, v)| n == "revoked" && *v == Node::Bool(true));
        edit::set(key, "revoked", Node::Bool(true));
        Ok(())
    });
    let text = match result {
        Ok(t) => t,
        Err(e) => return edit_failed(file, e),
    };
    if already {
        out(&format!(
            "{file}: key {id} was already revoked; nothing changed\n"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if let Err(e) = edit::write_atomically(Path::new(file), &text) {
        return edit_failed(file, e);
    }
    out(&format!(
        "{file}: revoked key {id}; config {}\n",
        fingerprint(&text)
    ));
    Ok(ExitCode::SUCCESS)
}

fn rotate(args: &Args) -> Result<ExitCode, Usage> {
    let file = args.required("--config")?;
    let old = args.positional.first().map_or("", String::as_str);
    let new_id = args.required("--id")?;
    check_name("rotate", "--id", new_id)?;
    let overlap = match args.value("--overlap") {
        Some(d) => when::parse_duration(d).ok_or_else(|| {
            Usage("rotate: --overlap must be <n><s|m|h|d>, such as 7d or 12h".into())
        })?,
        None => 7 * 86_400 * 1_000_000_000,
    };
    let config = match ConfigFile::read(Path::new(file)) {
        Ok(c) => c,
        Err(e) => return edit_failed(file, e),
    };
    let policy = match config.policy() {
        Ok(p) => p,
        Err(e) => return edit_failed(file, e),
    };
    let Some(old_key) = policy.keys.iter().find(|k| &*k.id == old) else {
        return fail(&format!("{file}: no key with id {old:?}"));
    };
    let client = policy.client_name(old_key).to_owned();
    let now = when::now();
    let state = old_key.state(Some(now));
    if matches!(state, KeyState::Revoked | KeyState::Expired) {
        return fail(&format!(
            "{file}: key {old} is {}: nothing to overlap with; use `nected-key add --client {client}`",
            if state == KeyState::Revoked { "revoked" } else { "expired" }
        ));
    }
    let until = now + overlap;
    let keep = old_key.expires.filter(|&e| e <= until);
    let key = match random_key() {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let new = entry(new_id, Some(&client), &key, &Vec::new());
    let expires_text = when::rfc3339(until);
    let result = config.edit(|m| {
        if edit::key_mut(m, new_id).is_some() {
            return Err(EditError::Refused(format!(
                "a key with id {new_id:?} exists already; choose another id"
            )));
        }
        if keep.is_none() {
            let old_entry = edit::key_mut(m, old)
                .ok_or_else(|| EditError::Refused(format!("no key with id {old:?}")))?;
            edit::set(old_entry, "expires", edit::text(expires_text.clone()));
        }
        edit::keys(m)
            .ok_or_else(|| EditError::Refused("\"keys\" is not a list".into()))?
            .push(new);
        Ok(())
    });
    let text = match result {
        Ok(t) => t,
        Err(e) => return edit_failed(file, e),
    };
    if let Err(e) = edit::write_atomically(Path::new(file), &text) {
        return edit_failed(file, e);
    }
    out(&format!("{key}\n"));
    let old_note = match keep {
        Some(e) => format!("{old} keeps its earlier expires {}", when::rfc3339(e)),
        None => format!("{old} now expires {expires_text}"),
    };
    err(&format!(
        "nected-key: added key {new_id} (client {client}) to {file}; {old_note}; config {}.\n\
         nected-key: the key above is shown only now: store it in a secret manager.\n\
         nected-key: before the overlap ends, `nected-key usage` shows whether {old} is still presented.\n",
        fingerprint(&text)
    ));
    Ok(ExitCode::SUCCESS)
}

fn state_name(s: KeyState) -> &'static str {
    match s {
        KeyState::Valid => "valid",
        KeyState::Revoked => "revoked",
        KeyState::Expired => "expired",
        KeyState::NotYetValid => "not_yet_valid",
    }
}

const WEEK: i128 = 7 * 86_400 * 1_000_000_000;

fn list(args: &Args) -> Result<ExitCode, Usage> {
    let file = args.required("--config")?;
    let policy = match ConfigFile::read(Path::new(file)).and_then(|c| c.policy()) {
        Ok(p) => p,
        Err(e) => return edit_failed(file, e),
    };
    let now = when::now();
    let t = |v: Option<i128>| v.map(when::rfc3339);
    if args.switch("--json") {
        let keys: Vec<serde_json::Value> = policy
            .keys
            .iter()
            .map(|k| {
                let state = k.state(Some(now));
                serde_json::json!({
                    "id": &*k.id,
                    "client": policy.client_name(k),
                    "state": state_name(state),
                    "not_before": t(k.not_before),
                    "expires": t(k.expires),
                    "expiring_within_7d": state != KeyState::Revoked
                        && state != KeyState::Expired
                        && k.expires.is_some_and(|e| e - now <= WEEK),
                })
            })
            .collect();
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&keys).unwrap_or_default()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "ID".to_owned(),
        "CLIENT".into(),
        "STATE".into(),
        "NOT_BEFORE".into(),
        "EXPIRES".into(),
        String::new(),
    ]];
    for k in policy.keys.iter() {
        let state = k.state(Some(now));
        let note = match (state, k.expires, k.not_before) {
            (KeyState::Valid | KeyState::NotYetValid, Some(e), _) if e - now <= WEEK => {
                format!("! expires in {}", when::span(e - now))
            }
            (KeyState::NotYetValid, _, Some(nb)) => format!("valid in {}", when::span(nb - now)),
            (KeyState::Expired, Some(e), _) => format!("expired {} ago", when::span(now - e)),
            _ => String::new(),
        };
        rows.push([
            k.id.to_string(),
            policy.client_name(k).to_owned(),
            state_name(state).to_owned(),
            t(k.not_before).unwrap_or_else(|| "-".into()),
            t(k.expires).unwrap_or_else(|| "-".into()),
            note,
        ]);
    }
    out(&table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// Rows as columns padded to their widest cell.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line += &format!("{cell:<w$}");
        }
        text += line.trim_end();
        text.push('\n');
    }
    text
}

// ---- render, usage, schema ---------------------------------------------------

fn render_cmd(args: &Args) -> Result<ExitCode, Usage> {
    let gateway_name = args.required("--gateway")?;
    let gateway = Gateway::parse(gateway_name).ok_or_else(|| {
        let names: Vec<&str> = Gateway::ALL.iter().map(|g| g.name()).collect();
        Usage(format!(
            "render: --gateway must be one of {}",
            names.join(", ")
        ))
    })?;
    let file = args.value("--config").unwrap_or("-");
    let bytes = match read_input(file) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let mut found = configurations(&bytes);
    if found.len() != 1 {
        return fail(&format!(
            "{file}: holds {} plugin configurations; render takes one",
            found.len()
        ));
    }
    let Some((_, config)) = found.pop() else {
        return fail(&format!("{file}: no plugin configuration"));
    };
    let policy = match config::compile(&config) {
        Ok(p) => p,
        Err(errors) => {
            print_config_errors(file, &errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    let rendered = Node::parse(&config)
        .ok()
        .and_then(|node| render::render(gateway, &node, &policy.fingerprint));
    match rendered {
        Some(text) => {
            out(&text);
            if gateway == Gateway::Kong && policy.host_from != HostFrom::Host {
                err(
                    "nected-key: note: on Kong, `:authority` is nginx's server_name, not the \
                     client's host; add \"host_from\": \"host\" to the configuration so that \
                     routes' `hosts` judge the client's Host (docs/gateways.md#kong)",
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        None => fail(&format!("{file}: cannot be rendered")),
    }
}

fn usage_cmd(args: &Args) -> Result<ExitCode, Usage> {
    let admin = args.required("--admin")?;
    let policy = match args.value("--config") {
        Some(file) => match ConfigFile::read(Path::new(file)).and_then(|c| c.policy()) {
            Ok(p) => Some(p),
            Err(e) => return edit_failed(file, e),
        },
        None => None,
    };
    let stats = match usage::fetch_stats(admin) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let counts = usage::parse_stats(&stats);
    let now = when::now();
    // One row per key: configured ones in config order, then the others.
    let mut ids: Vec<String> = Vec::new();
    if let Some(p) = &policy {
        ids.extend(p.keys.iter().map(|k| k.id.to_string()));
    }
    ids.extend(
        counts
            .keys()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let mut rows = vec![[
        "ID".to_owned(),
        "CLIENT".into(),
        "STATE".into(),
        "ALLOWED".into(),
        "REFUSED".into(),
        String::new(),
    ]];
    let mut json = Vec::new();
    for id in &ids {
        let (allowed, refused) = counts.get(id).copied().unwrap_or((0, 0));
        let key = policy
            .as_ref()
            .and_then(|p| p.keys.iter().find(|k| &*k.id == id).map(|k| (p, k)));
        let state = key.map(|(_, k)| k.state(Some(now)));
        let client = key.map(|(p, k)| p.client_name(k).to_owned());
        let flag = match (state, allowed + refused) {
            (Some(KeyState::Revoked | KeyState::Expired), n) if n > 0 && refused > 0 => {
                "! still presented"
            }
            (Some(KeyState::Valid), 0) => "never seen",
            (None, _) if policy.is_some() => "not in this config",
            _ => "",
        };
        rows.push([
            id.clone(),
            client.clone().unwrap_or_else(|| "-".into()),
            state.map_or("-", state_name).to_owned(),
            allowed.to_string(),
            refused.to_string(),
            flag.to_owned(),
        ]);
        json.push(serde_json::json!({
            "id": id,
            "client": client,
            "state": state.map(state_name),
            "allowed": allowed,
            "refused": refused,
            "still_presented": flag == "! still presented",
            "never_seen": flag == "never seen",
        }));
    }
    if args.switch("--json") {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ));
    } else {
        out(&table(&rows));
        out("(requests since Envoy started; ALLOWED: the key passed, REFUSED: it was presented but refused)\n");
    }
    Ok(ExitCode::SUCCESS)
}

fn schema(_args: &Args) -> Result<ExitCode, Usage> {
    out(&nected_key_auth::schema::json_schema_text());
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
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
