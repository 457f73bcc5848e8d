//! The proxy-wasm glue: compile the config in `on_configure`, and per
//! request read the headers, call `decide`, count, log and apply.

mod abi;
#[cfg(feature = "test-crash")]
mod crash;

use crate::config::{self, fold_eq};
use crate::decide::{decide_without_policy, Decision, Env, Outcome, Reply};
use crate::path;
use crate::policy::{PathHash, Policy};
use crate::revocation::{self, Registry, Revocations, Shared};
use crate::wire;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

proxy_wasm::main! {{
    logging::init();
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root {
            context_id,
            state: Rc::default(),
            revocations: None,
        })
    });
}}

thread_local! {
    /// The revocations of every plugin name configured in this VM.
    static REGISTRY: RefCell<Registry> = RefCell::default();
}

/// What every request of a root context shares; replaced whole on configure.
#[derive(Default)]
struct State {
    policy: Option<Policy>,
    /// Counter ids, in `Outcome::ALL` order.
    counters: [Option<u32>; Outcome::ALL.len()],
    /// Serialized reply headers, in `REPLIES` order.
    reply_headers: Vec<Vec<u8>>,
    /// The per-request filter state value and log line, reused.
    buf: RefCell<Vec<u8>>,
    /// Per-key and per-reason counters, defined the first time each is
    /// needed: 10,000 configured keys cost no stats until presented.
    detail: RefCell<Detail>,
}

/// Counter ids defined on first use.
#[derive(Default)]
struct Detail {
    /// By the key's address in the policy (fixed while this state lives):
    /// `[allowed, refused]`.
    keys: HashMap<usize, [Option<u32>; 2], PathHash>,
    /// By `Reason::as_str()` of a refusal.
    reasons: Vec<(&'static str, u32)>,
}

/// proxy-wasm's `debug` log level.
const LEVEL_DEBUG: u32 = 1;

const REPLIES: [Reply; 5] = [
    Reply::Unauthorized,
    Reply::Forbidden,
    Reply::HttpsRequired,
    Reply::BadRequest,
    Reply::Unavailable,
];

impl State {
    fn new(policy: Option<Policy>) -> State {
        let counters =
            Outcome::ALL.map(|o| abi::define_counter(&format!("nected_key_auth.{}", o.as_str())));
        let www_authenticate = policy.as_ref().map(|p| &*p.www_authenticate);
        let reply_headers = REPLIES
            .iter()
            .map(|&reply| {
                let mut headers = vec![("content-type", "application/json")];
                if let (Reply::Unauthorized, Some(value)) = (reply, www_authenticate) {
                    headers.push(("www-authenticate", value));
                }
                wire::serialize_map(&headers)
            })
            .collect();
        State {
            policy,
            counters,
            reply_headers,
            buf: RefCell::new(Vec::with_capacity(160)),
            detail: RefCell::default(),
        }
    }

    /// `nected_key_auth.key.<id>.allowed` / `.refused` for the key the
    /// presented value matched, and `nected_key_auth.denied.<reason>` for a
    /// refusal (in report mode: what enforce would have done).
    fn count_detail(&self, d: &Decision) {
        let refused = !matches!(d.outcome, Outcome::Public | Outcome::Allowed);
        let Ok(mut detail) = self.detail.try_borrow_mut() else {
            return;
        };
        if let Some(key) = d.key {
            let (slot, suffix) = if refused {
                (1, "refused")
            } else {
                (0, "allowed")
            };
            let ids = detail
                .keys
                .entry(key as *const _ as usize)
                .or_insert([None, None]);
            if let Some(cached) = ids.get_mut(slot) {
                if cached.is_none() {
                    *cached =
                        abi::define_counter(&format!("nected_key_auth.key.{}.{suffix}", key.id));
                }
                if let Some(id) = *cached {
                    abi::increment(id);
                }
            }
        }
        if refused {
            let reason = d.reason.as_str();
            let id = match detail.reasons.iter().find(|(r, _)| *r == reason) {
                Some(&(_, id)) => Some(id),
                None => {
                    let id = abi::define_counter(&format!("nected_key_auth.denied.{reason}"));
                    if let Some(id) = id {
                        detail.reasons.push((reason, id));
                    }
                    id
                }
            };
            if let Some(id) = id {
                abi::increment(id);
            }
        }
    }

    fn count(&self, outcome: Outcome) {
        if let Some(Some(id)) = self.counters.get(outcome.index()) {
            abi::increment(*id);
        }
    }

    fn reply(&self, reply: Reply) {
        let at = REPLIES.iter().position(|&r| r == reply).unwrap_or(0);
        let headers = self.reply_headers.get(at).map_or(&[][..], |h| &h[..]);
        if !abi::send_local_response(reply.status(), headers, reply.body(), reply.grpc_status()) {
            log::error!("the host refused a local reply; closing the request stream");
            abi::close_request_stream();
        }
    }
}

struct Root {
    context_id: u32,
    state: Rc<State>,
    /// The revocations this context published to, once configured.
    revocations: Option<Shared>,
}

impl Context for Root {}

impl Root {
    /// Publishes the revoked keys of an accepted configuration to every
    /// configuration of the same plugin name in this VM.
    fn publish_revocations(&mut self, policy: &Policy) {
        let name = plugin_name();
        let shared = REGISTRY.with(|r| r.try_borrow_mut().map(|mut r| r.join(&name)));
        let Ok(shared) = shared else {
            return;
        };
        if let Some(old) = self.revocations.take() {
            if !Rc::ptr_eq(&old, &shared) {
                withdraw(&old, self.context_id);
            }
        }
        if let Ok(mut r) = shared.try_borrow_mut() {
            r.publish(self.context_id, revocation::revoked_digests(policy));
        }
        self.revocations = Some(shared);
    }
}

/// The name that groups this filter's configurations in the VM.
///
/// ngx_wasm_module 3bed278 (Kong's proxy-wasm host) answers `plugin_name`
/// from the filter chain of a request, which `on_configure` has none of:
/// the worker dies (SIGSEGV, `get_filter_name`). It does not implement
/// `plugin_vm_id`, which Envoy answers from the same plugin as
/// `plugin_name`; so `plugin_name` is asked only of a host that answers
/// `plugin_vm_id`, and the others group by `plugin_root_id` (on
/// ngx_wasm_module, every filter of one module).
fn plugin_name() -> Vec<u8> {
    let property: &[u8] = if abi::get_property(b"plugin_vm_id").is_some() {
        b"plugin_name"
    } else {
        b"plugin_root_id"
    };
    abi::get_property(property).unwrap_or_default()
}

fn withdraw(shared: &Shared, context_id: u32) {
    if let Ok(mut r) = shared.try_borrow_mut() {
        r.withdraw(context_id);
    }
}

impl Drop for Root {
    /// The host deleted this root context (Envoy: its listener filter chain
    /// drained): its revocations no longer apply.
    fn drop(&mut self) {
        if let Some(shared) = self.revocations.take() {
            withdraw(&shared, self.context_id);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let started = abi::now();
        let bytes = abi::plugin_configuration().unwrap_or_default();
        match config::compile(&bytes) {
            Ok(policy) => {
                let now = abi::now();
                let s = policy.summary(now.unwrap_or(0));
                let micros = now.zip(started).map_or(0, |(b, a)| (b - a).max(0) / 1000);
                self.publish_revocations(&policy);
                let vm_revoked = self
                    .revocations
                    .as_ref()
                    .and_then(|r| r.try_borrow().ok().map(|r| (r.len(), r.live())))
                    .unwrap_or_default();
                log::info!(
                    "configured mode={} routes={} keys={} clients={} revoked={} expired={} expiring_7d={} config={} version={} in {}.{:03} ms",
                    policy.mode.as_str(),
                    s.routes,
                    s.keys,
                    s.clients,
                    s.revoked,
                    s.expired,
                    s.expiring_7d,
                    policy.fingerprint,
                    env!("CARGO_PKG_VERSION"),
                    micros / 1000,
                    micros % 1000
                );
                if vm_revoked.1 > 1 {
                    log::info!(
                        "{} keys revoked across the {} live configurations of this filter in this VM",
                        vm_revoked.0,
                        vm_revoked.1
                    );
                }
                self.state = Rc::new(State::new(Some(policy)));
                true
            }
            Err(errors) => {
                for e in &errors {
                    log::error!("invalid configuration: {e}");
                }
                log::error!(
                    "configuration rejected ({} error{}); {}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    if self.state.policy.is_some() {
                        "keeping the previous configuration"
                    } else {
                        "the host keeps its previous configuration or does not start; \
                         a host that runs this instance anyway gets 503 for every request"
                    }
                );
                if self.state.policy.is_none() {
                    // Never configured: define the counters so that the
                    // 503s this context now answers are counted.
                    self.state = Rc::new(State::new(None));
                }
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            state: Rc::clone(&self.state),
            revocations: self.revocations.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request {
    state: Rc<State>,
    revocations: Option<Shared>,
}

impl Context for Request {}

/// The host facts a decision may ask for, and the revocations of the other
/// live configurations of this filter.
struct Host<'a> {
    revocations: Option<&'a RefCell<Revocations>>,
}

impl Env for Host<'_> {
    fn now(&self) -> Option<i128> {
        abi::now()
    }

    fn is_tls(&self) -> bool {
        abi::get_property(b"connection\0tls_version").is_some_and(|v| !v.is_empty())
    }

    fn revoked_elsewhere(&self, digest: &[u8; 32]) -> bool {
        // Fails closed should the set ever be busy (it cannot be: it only
        // changes in on_configure and on delete, never during a request).
        self.revocations
            .is_some_and(|r| r.try_borrow().map_or(true, |r| r.contains(digest)))
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "test-crash")]
        crash::check_request();
        let state = &*self.state;
        let Some(policy) = &state.policy else {
            let d = decide_without_policy();
            record(state, &d);
            state.reply(Reply::Unavailable);
            return Action::Pause;
        };
        let buf = abi::request_headers();
        let req = policy.scan(wire::pairs(&buf));
        let host = Host {
            revocations: self.revocations.as_deref(),
        };
        let d = policy.decide(&req, &host);
        if policy.strip_key {
            // A key a client put in the URL reaches neither the upstream
            // nor the access log, whatever the decision. A path that ends
            // where its canonical form does has no query.
            let stripped = req
                .path
                .filter(|p| d.path_end != Some(p.len()))
                .and_then(|p| path::without_query_param(p, policy.header.as_bytes()));
            if let Some(stripped) = stripped {
                replace_path(stripped);
            }
        }
        record(state, &d);
        if policy.log_requests || d.outcome.refused() {
            log_decision(state, &d);
        }
        if let Some(reply) = d.reply {
            state.reply(reply);
            return Action::Pause;
        }
        for name in d.removals(&req, policy) {
            abi::remove_request_header(name);
        }
        if let Some((name, client)) = d.set_client {
            // The scan saw every header line: when none has this name, an
            // add does what a replace would, for less.
            if req.client_header {
                abi::replace_request_header(name, client);
            } else {
                abi::add_request_header(name, client);
            }
        }
        Action::Continue
    }

    /// Request trailers (HTTP/2, chunked HTTP/1.1): the key header (with
    /// `strip_key`) and a client header, in either spelling, are removed
    /// here too, so neither reaches the upstream beside the real ones.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(policy) = &self.state.policy else {
            return Action::Continue;
        };
        let key = policy.strip_key.then_some(policy.header.as_bytes());
        let client = policy.forward_client.as_deref().map(str::as_bytes);
        let buf = abi::request_trailers();
        for (name, _) in wire::pairs(&buf) {
            if key.is_some_and(|k| fold_eq(name, k)) || client.is_some_and(|c| fold_eq(name, c)) {
                abi::remove_request_trailer(name);
            }
        }
        Action::Continue
    }
}

/// Sets `:path` to `path`. ngx_wasm_module 3bed278 keeps the old query
/// when the new `:path` has none (it only sets nginx's `$args` from a `?`):
/// read back, and where the query survived, end the path with an empty
/// one. Envoy takes the first write; the read-back is its only cost, paid
/// only when a key query parameter was removed.
fn replace_path(mut path: Vec<u8>) {
    abi::replace_request_header_bytes(b":path", &path);
    if !path.contains(&b'?') && abi::request_header(b":path").is_some_and(|p| p != path) {
        path.push(b'?');
        abi::replace_request_header_bytes(b":path", &path);
    }
}

/// Counts, logs and exposes (as filter state) the outcome of a request.
fn record(state: &State, d: &Decision) {
    state.count(d.outcome);
    state.count_detail(d);
    let Ok(mut buf) = state.buf.try_borrow_mut() else {
        return;
    };
    buf.clear();
    d.write_filter_state(&mut buf);
    abi::set_property("nected_key_auth", &buf);
}

/// The decision's debug line: for every refusal, and for requests that
/// pass only with `log_requests` (decided when the configuration is
/// compiled: asking the host for its level per request,
/// `proxy_get_log_level`, is missing on some hosts (APISIX), and formatting
/// a line the host drops costs about 2,000 instructions on the hot path).
fn log_decision(state: &State, d: &Decision) {
    let Ok(mut buf) = state.buf.try_borrow_mut() else {
        return;
    };
    buf.clear();
    d.write_log_line(&mut buf);
    abi::log_bytes(LEVEL_DEBUG, &buf);
}

/// A `log` backend over `proxy_log` that never panics.
///
/// Every line down to `debug` goes to the host, which filters by its own
/// level (Envoy: `--component-log-level wasm:debug`). A passed request's
/// line is written only with `log_requests` (see `log_decision`): the host's
/// level is not asked for (`proxy_get_log_level` is missing from some
/// hosts, APISIX's wasm-nginx-module, which then refuse the module).
mod logging {
    use super::abi;

    struct HostLogger;

    static LOGGER: HostLogger = HostLogger;

    impl log::Log for HostLogger {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() <= log::max_level()
        }

        fn log(&self, record: &log::Record) {
            let level = match record.level() {
                log::Level::Trace => 0,
                log::Level::Debug => 1,
                log::Level::Info => 2,
                log::Level::Warn => 3,
                log::Level::Error => 4,
            };
            abi::log(level, &record.args().to_string());
        }

        fn flush(&self) {}
    }

    pub fn init() {
        let _ = log::set_logger(&LOGGER);
        std::panic::set_hook(Box::new(|info| abi::log(5, &format!("panic: {info}"))));
        log::set_max_level(log::LevelFilter::Debug);
    }
}
