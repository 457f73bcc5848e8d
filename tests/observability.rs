#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The Grafana dashboard and the Prometheus alert rules in
//! `deploy/observability/` query only metrics the filter emits.
//!
//! The names come from the source: the outcome counters from
//! `Outcome::ALL`, the per-reason counters' label values from `Reason::as_str`
//! of every refusal. Their Prometheus form is Envoy's `/stats/prometheus`
//! with the `stats_tags` of the shipped bootstraps (docs/operations.md):
//! `nected_key_auth.<outcome>` -> `nected_key_auth_<outcome>`,
//! `nected_key_auth.denied.<reason>` ->
//! `nected_key_auth_denied{nected_key_auth_reason="<reason>"}`,
//! `nected_key_auth.key.<id>.allowed|refused` ->
//! `nected_key_auth_key_allowed|refused{nected_key_id="<id>"}`.
//!
//! Every metric name in a query must be one of them, every `__name__` regex
//! selector must select names of exactly one family, a reason label value
//! must be a refusal reason, and a tag label is only used with the metric
//! that carries it. The PromQL itself is parsed by `promtool check rules`,
//! and the alert rules' behaviour is pinned by `promtool test rules`.

use nected_key_auth::decide::{Outcome, Reason};
use nected_key_auth::path::PathError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const DIR: &str = "deploy/observability";
const DASHBOARD: &str = "nected-key-auth.dashboard.json";
const RULES: &str = "nected-key-auth.rules.yaml";
const RULES_TEST: &str = "nected-key-auth.rules.test.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Outcome,
    Reason,
    KeyAllowed,
    KeyRefused,
}

/// Every refusal reason. The exhaustive `match` makes a new `Reason` variant
/// a compile error here until it is sorted into refusal or not.
fn refusal_reasons() -> Vec<&'static str> {
    fn is_refusal(r: Reason) -> bool {
        match r {
            Reason::PublicRoute | Reason::CorsPreflight | Reason::ValidKey => false,
            Reason::NoKey
            | Reason::EmptyKey
            | Reason::RepeatedKey
            | Reason::CommaInKey
            | Reason::KeyTooLong
            | Reason::UnknownKey
            | Reason::Revoked
            | Reason::NotYetValid
            | Reason::Expired
            | Reason::ClientNotAllowed
            | Reason::NotTls
            | Reason::Path(_)
            | Reason::MethodOverride
            | Reason::RewriteHint
            | Reason::NoMethod
            | Reason::BadHost
            | Reason::TooManyHeaders
            | Reason::NoConfig => true,
        }
    }
    fn every_path_error(e: PathError) -> PathError {
        match e {
            PathError::NotOriginForm
            | PathError::DotSegment
            | PathError::EncodedSlash
            | PathError::EncodedSemicolon
            | PathError::Backslash
            | PathError::Control
            | PathError::BadEscape
            | PathError::DoubleSlash
            | PathError::EncodedDelimiter
            | PathError::NotUtf8 => e,
        }
    }
    let paths = [
        PathError::NotOriginForm,
        PathError::DotSegment,
        PathError::EncodedSlash,
        PathError::EncodedSemicolon,
        PathError::Backslash,
        PathError::Control,
        PathError::BadEscape,
        PathError::DoubleSlash,
        PathError::EncodedDelimiter,
        PathError::NotUtf8,
    ]
    .map(every_path_error);
    let mut all = vec![
        Reason::PublicRoute,
        Reason::CorsPreflight,
        Reason::ValidKey,
        Reason::NoKey,
        Reason::EmptyKey,
        Reason::RepeatedKey,
        Reason::CommaInKey,
        Reason::KeyTooLong,
        Reason::UnknownKey,
        Reason::Revoked,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::ClientNotAllowed,
        Reason::NotTls,
        Reason::MethodOverride,
        Reason::RewriteHint,
        Reason::NoMethod,
        Reason::BadHost,
        Reason::TooManyHeaders,
        Reason::NoConfig,
    ];
    all.extend(paths.map(Reason::Path));
    all.into_iter()
        .filter(|r| is_refusal(*r))
        .map(Reason::as_str)
        .collect()
}

/// The tag labels of the shipped bootstraps' `stats_tags`.
const KEY_ID: &str = "nected_key_id";
const REASON: &str = "nected_key_auth_reason";

/// A metric the filter emits, in its Prometheus form.
struct Metric {
    name: String,
    family: Family,
    /// The tag label it carries, if any.
    label: Option<&'static str>,
}

/// Envoy's Prometheus name of a stat whose tags were extracted: every
/// character outside `[a-zA-Z0-9_]` -> `_`.
fn prometheus(stat: &str) -> String {
    stat.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn emitted() -> Vec<Metric> {
    let mut metrics: Vec<Metric> = Outcome::ALL
        .iter()
        .map(|o| Metric {
            name: prometheus(&format!("nected_key_auth.{}", o.as_str())),
            family: Family::Outcome,
            label: None,
        })
        .collect();
    // `nected_key_auth.denied.<reason>` without its tag `.<reason>`, and
    // `nected_key_auth.key.<id>.allowed` without `<id>.`.
    metrics.push(Metric {
        name: prometheus("nected_key_auth.denied"),
        family: Family::Reason,
        label: Some(REASON),
    });
    metrics.push(Metric {
        name: prometheus("nected_key_auth.key.allowed"),
        family: Family::KeyAllowed,
        label: Some(KEY_ID),
    });
    metrics.push(Metric {
        name: prometheus("nected_key_auth.key.refused"),
        family: Family::KeyRefused,
        label: Some(KEY_ID),
    });
    let distinct: BTreeSet<&String> = metrics.iter().map(|m| &m.name).collect();
    assert_eq!(distinct.len(), metrics.len(), "two metrics share a name");
    metrics
}

/// The subset of Prometheus regular expressions the queries use: literal
/// `[A-Za-z0-9_]`, `.+`, `.*` and groups of literal alternatives
/// `(a|b|c)`. Anything else is refused, so no selector goes unchecked.
#[derive(Debug)]
enum Piece {
    Lit(String),
    Any { min: usize },
    Alt(Vec<String>),
}

fn parse_regex(re: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut chars = re.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => match chars.next() {
                Some('+') => pieces.push(Piece::Any { min: 1 }),
                Some('*') => pieces.push(Piece::Any { min: 0 }),
                other => panic!("unsupported regex {re:?} at .{other:?}"),
            },
            '(' => {
                let mut group = String::new();
                loop {
                    match chars.next() {
                        Some(')') => break,
                        Some(c) if c == '|' || c.is_ascii_alphanumeric() || c == '_' => {
                            group.push(c)
                        }
                        other => panic!("unsupported group in {re:?} at {other:?}"),
                    }
                }
                pieces.push(Piece::Alt(group.split('|').map(str::to_owned).collect()));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => match pieces.last_mut() {
                Some(Piece::Lit(s)) => s.push(c),
                _ => pieces.push(Piece::Lit(c.to_string())),
            },
            other => panic!("unsupported regex {re:?} at {other:?}"),
        }
    }
    pieces
}

/// Fully anchored, as Prometheus anchors label regexes.
fn regex_matches(pieces: &[Piece], s: &str) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Lit(l), rest)) => s
            .strip_prefix(l.as_str())
            .is_some_and(|t| regex_matches(rest, t)),
        Some((Piece::Alt(alts), rest)) => alts.iter().any(|a| {
            s.strip_prefix(a.as_str())
                .is_some_and(|t| regex_matches(rest, t))
        }),
        Some((Piece::Any { min }, rest)) => {
            (*min..=s.len()).any(|n| s.is_char_boundary(n) && regex_matches(rest, &s[n..]))
        }
    }
}

#[derive(Debug, Default)]
struct Query {
    /// Metric names written out.
    names: Vec<String>,
    /// Selectors with `__name__` matchers: (positive regexes, negative ones).
    selectors: Vec<(Vec<String>, Vec<String>)>,
    /// Tag labels used (in `by (…)` or a matcher).
    labels: BTreeSet<String>,
    /// Values matched against the reason label: (operator, value).
    reasons: Vec<(String, String)>,
}

/// Metric names, `__name__` matchers and tag labels of a PromQL expression.
/// Quoted strings are skipped, except as the value of a matcher.
fn scan(expr: &str) -> Query {
    let mut q = Query::default();
    let b = expr.as_bytes();
    let mut i = 0;
    let quoted = |i: &mut usize| -> String {
        let quote = b[*i];
        let start = *i + 1;
        *i = start;
        while b[*i] != quote {
            assert_ne!(b[*i], b'\\', "escapes in {expr:?}");
            *i += 1;
        }
        *i += 1;
        expr[start..*i - 1].to_owned()
    };
    let word = |i: &mut usize| -> String {
        let start = *i;
        while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
            *i += 1;
        }
        expr[start..*i].to_owned()
    };
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                quoted(&mut i);
            }
            b'{' => {
                let (mut pos, mut neg) = (Vec::new(), Vec::new());
                i += 1;
                loop {
                    while matches!(b[i], b' ' | b',' | b'\n') {
                        i += 1;
                    }
                    if b[i] == b'}' {
                        break;
                    }
                    let label = word(&mut i);
                    assert!(!label.is_empty(), "matcher in {expr:?}");
                    while b[i] == b' ' {
                        i += 1;
                    }
                    let op_len = if b[i] == b'=' && b[i + 1] != b'~' {
                        1
                    } else {
                        2
                    };
                    let op = expr[i..i + op_len].to_owned();
                    i += op_len;
                    while b[i] == b' ' {
                        i += 1;
                    }
                    let value = quoted(&mut i);
                    match label.as_str() {
                        "__name__" => match op.as_str() {
                            "=~" => pos.push(value),
                            "!~" => neg.push(value),
                            _ => panic!("__name__{op} in {expr:?}: use a plain name"),
                        },
                        REASON => {
                            q.labels.insert(label);
                            q.reasons.push((op, value));
                        }
                        l if l.starts_with("nected") => {
                            q.labels.insert(label);
                        }
                        _ => {}
                    }
                }
                i += 1;
                if !pos.is_empty() || !neg.is_empty() {
                    assert!(!pos.is_empty(), "only negative __name__ matchers: {expr:?}");
                    q.selectors.push((pos, neg));
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let w = word(&mut i);
                if w == KEY_ID || w == REASON {
                    q.labels.insert(w);
                } else if w.starts_with("nected") {
                    q.names.push(w);
                }
            }
            _ => i += 1,
        }
    }
    q
}

/// Checks one expression; returns the families it reads.
fn check_expr(expr: &str, emitted: &[Metric]) -> BTreeSet<Family> {
    let q = scan(expr);
    assert!(
        !q.names.is_empty() || !q.selectors.is_empty(),
        "no metric in {expr:?}"
    );
    let mut read: Vec<&Metric> = Vec::new();
    for name in &q.names {
        let m = emitted
            .iter()
            .find(|m| &m.name == name)
            .unwrap_or_else(|| panic!("{name} is not a metric the filter emits ({expr:?})"));
        read.push(m);
    }
    for (pos, neg) in &q.selectors {
        let pos: Vec<_> = pos.iter().map(|r| parse_regex(r)).collect();
        let neg: Vec<_> = neg.iter().map(|r| parse_regex(r)).collect();
        let selected: Vec<&Metric> = emitted
            .iter()
            .filter(|m| {
                pos.iter().all(|p| regex_matches(p, &m.name))
                    && !neg.iter().any(|p| regex_matches(p, &m.name))
            })
            .collect();
        assert!(!selected.is_empty(), "{expr:?} selects no emitted metric");
        let kinds: BTreeSet<Family> = selected.iter().map(|m| m.family).collect();
        let names: Vec<&str> = selected.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(kinds.len(), 1, "{expr:?} mixes metric families: {names:?}");
        read.extend(selected);
    }
    // A tag label only with a metric that carries it.
    for label in &q.labels {
        assert!(
            read.iter().any(|m| m.label == Some(label.as_str())),
            "{expr:?} uses {label} on metrics without it"
        );
    }
    let reasons = refusal_reasons();
    for (op, value) in &q.reasons {
        match op.as_str() {
            "=" | "!=" => assert!(
                reasons.contains(&value.as_str()),
                "{value:?} is not a refusal reason ({expr:?})"
            ),
            _ => {
                let re = parse_regex(value);
                assert!(
                    reasons.iter().any(|r| regex_matches(&re, r)),
                    "{value:?} matches no refusal reason ({expr:?})"
                );
            }
        }
    }
    read.iter().map(|m| m.family).collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard_exprs() -> Vec<(String, String)> {
    let path = repo().join(DIR).join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().expect("panels") {
            if let Some(inner) = p.get("panels") {
                walk(inner, out);
            }
            let title = p["title"].as_str().expect("panel title").to_owned();
            for t in p
                .get("targets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert_eq!(t["datasource"]["type"], "prometheus", "{title}");
                out.push((title.clone(), t["expr"].as_str().expect("expr").to_owned()));
            }
        }
    }
    walk(&dash["panels"], &mut out);
    out
}

fn rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join(DIR).join(RULES)).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules YAML");
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        assert!(g["name"].is_string());
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"].as_str().expect("alert name").to_owned();
            let expr = r["expr"].as_str().expect("expr").to_owned();
            assert!(r["annotations"]["summary"].is_string(), "{name}");
            out.push((name, expr));
        }
    }
    out
}

/// `make test` unpacks promtool into `.tools/` and names it in
/// `NKA_PROMTOOL`; without it, that same file if present, else `PATH`'s.
fn promtool(args: &[&str], dir: &Path) {
    let local = repo().join(".tools/prometheus/usr/bin/promtool");
    let bin = std::env::var_os("NKA_PROMTOOL").unwrap_or_else(|| {
        if local.is_file() {
            local.into_os_string()
        } else {
            "promtool".into()
        }
    });
    let out = Command::new(&bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{bin:?}: {e}; run `make test`, which installs promtool"));
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scanner_and_matcher_catch_mistakes() {
    let e = emitted();
    let bad = [
        // The name without the shipped stats_tags.
        "rate(nected_key_auth_denied_revoked[5m])",
        "rate(nected_key_auth_key_cron_allowed[5m])",
        r#"rate(nected_key_auth_denied{nected_key_auth_reason="revokd"}[5m])"#,
        r#"rate(nected_key_auth_denied{nected_key_auth_reason=~"revokd|expird"}[5m])"#,
        "sum by (nected_key_id) (rate(nected_key_auth_denied[5m]))",
        r#"rate(nected_key_auth_key_allowed{nected_key_auth_reason="revoked"}[5m])"#,
        r#"rate({__name__=~"nected_key_auth_.+"}[5m])"#,
        r#"rate({__name__=~"nected_key_auth_nothing_.*"}[5m])"#,
    ];
    for expr in bad {
        let caught = std::panic::catch_unwind(|| check_expr(expr, &e)).is_err();
        assert!(caught, "{expr} passed the check");
    }
    let good =
        r#"sum by (nected_key_id) (rate(nected_key_auth_key_refused{nected_key_id=~".+"}[5m]))"#;
    assert_eq!(check_expr(good, &e), BTreeSet::from([Family::KeyRefused]));
    let p = parse_regex("a_(b|cd).+_e");
    assert!(regex_matches(&p, "a_cdx_e") && !regex_matches(&p, "a_cd_e"));
}

#[test]
fn tag_labels_are_the_shipped_bootstraps() {
    // The labels come from `stats_config.stats_tags` in the shipped Envoy
    // bootstraps; where a bootstrap defines tags, it defines these.
    for file in ["envoy/envoy.yaml", "deploy/envoy-ecds/envoy.yaml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let Some(tags) = doc["stats_config"]["stats_tags"].as_sequence() else {
            continue;
        };
        let names: BTreeSet<&str> = tags.iter().filter_map(|t| t["tag_name"].as_str()).collect();
        assert!(
            names.contains(KEY_ID) && names.contains(REASON),
            "{file}: stats_tags {names:?}"
        );
    }
}

#[test]
fn dashboard_queries_name_emitted_metrics() {
    let e = emitted();
    let exprs = dashboard_exprs();
    let mut seen = BTreeSet::new();
    for (title, expr) in &exprs {
        let families = std::panic::catch_unwind(|| check_expr(expr, &e))
            .unwrap_or_else(|_| panic!("panel {title:?}"));
        seen.extend(families);
    }
    // Outcomes over time, denials by reason, top keys, keys refused.
    assert_eq!(
        seen,
        BTreeSet::from([
            Family::Outcome,
            Family::Reason,
            Family::KeyAllowed,
            Family::KeyRefused
        ])
    );
    // Every outcome has its own series in the outcomes panel.
    let all: String = exprs.iter().map(|(_, x)| x.as_str()).collect();
    for o in Outcome::ALL {
        assert!(
            all.contains(&format!("nected_key_auth_{}[", o.as_str())),
            "{}",
            o.as_str()
        );
    }
}

#[test]
fn dashboard_queries_parse_as_promql() {
    // promtool parses each query as a recording rule, with Grafana's
    // interval variables filled in.
    let dir = std::env::temp_dir().join(format!("nka-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rules = String::from("groups:\n- name: dashboard\n  rules:\n");
    for (i, (_, expr)) in dashboard_exprs().iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "2m")
            .replace("$__range", "6h");
        rules.push_str(&format!(
            "  - record: nka:dashboard_{i}\n    expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    std::fs::write(dir.join("dashboard.rules.yaml"), rules).unwrap();
    promtool(&["check", "rules", "dashboard.rules.yaml"], &dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn alert_rules_name_emitted_metrics_and_pass_promtool() {
    let e = emitted();
    let rules = rules();
    let names: BTreeSet<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "NectedKeyAuthDenialRateSpike",
            "NectedKeyAuthRevokedKeyInUse",
            "NectedKeyAuthNoValidConfig"
        ])
    );
    for (name, expr) in &rules {
        std::panic::catch_unwind(|| check_expr(expr, &e))
            .unwrap_or_else(|_| panic!("alert {name}"));
    }
    let dir = repo().join(DIR);
    promtool(&["check", "rules", RULES], &dir);
    promtool(&["test", "rules", RULES_TEST], &dir);
}
