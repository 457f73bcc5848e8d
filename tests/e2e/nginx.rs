//! The contract on a second proxy-wasm host: nginx + ngx_wasm_module (the
//! engine inside Kong Gateway) + Wasmtime, running the shipped
//! deploy/kong/nginx.conf. The scenario tables are scenarios.rs's.

use crate::harness::*;
use crate::ngx::*;
use crate::scenarios::{self, Host};

/// The contract config with `host_from: host` (`:authority` is nginx's
/// `server_name` there).
pub fn contract_config() -> String {
    crate::contract::config().replace(
        r#""mode": "enforce""#,
        r#""mode": "enforce", "host_from": "host""#,
    )
}

#[test]
fn shared_tables_on_nginx() {
    let mut t = Cases::default();
    let mut not_expressed = Vec::new();
    for (label, config, table) in [
        ("contract", contract_config(), scenarios::contract_rows()),
        ("paths", crate::paths::config(), scenarios::path_rows()),
    ] {
        let nginx = Nginx::start(
            &format!("ngx-shared-{label}"),
            NgxSetup::new(config).underscores(),
        );
        let send = |r: &Req| nginx.send(r.clone());
        not_expressed.extend(scenarios::run(Host::Nginx, &table, &send, &mut t));
        let expected = table
            .iter()
            .filter(|s| scenarios::outcome(s, Host::Nginx).is_some())
            .count();
        let lines = nginx.wait_decisions(expected);
        let denied = lines
            .iter()
            .filter(|l| l.contains("] outcome=denied_"))
            .count();
        t.check(
            &format!("{label}: one decision log line per refusal"),
            denied == expected,
            format_args!("want {expected}, got {denied}"),
        );
        t.check(
            &format!("{label}: no worker crash"),
            !nginx.crashed(),
            "signal",
        );
    }
    eprintln!(
        "rows nginx cannot express:\n  {}",
        not_expressed.join("\n  ")
    );
    t.finish();
}
