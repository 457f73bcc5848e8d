//! The shipped Envoy setup: it validates, its ECDS resource is
//! envoy/plugin-config.json as `nected-key render` writes it, and the curl
//! lines `make run` prints work against it.

use crate::harness::*;
use std::process::Command;

fn demo_keys() -> std::collections::BTreeMap<String, String> {
    read("envoy/demo-keys.env")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn shipped_envoy_configs_validate_and_embed_the_example_config() {
    // Every shipped Envoy bootstrap (the ECDS resource itself is loaded
    // for real by the ecds scenario).
    for config in ["envoy/envoy.yaml", "deploy/envoy-ecds/envoy.yaml"] {
        let out = Command::new(envoy_bin())
            .args(["--mode", "validate", "-c", config, "--log-level", "warn"])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "envoy --mode validate {config}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let yaml = read("envoy/envoy.yaml");
    assert_eq!(
        read("envoy/ecds/nected-key-auth.yaml"),
        rendered_demo("envoy-ecds"),
        "envoy/ecds/nected-key-auth.yaml must be envoy/plugin-config.json as \
         `nected-key render --gateway envoy-ecds --config envoy/plugin-config.json` writes it"
    );
    let resource = read("envoy/ecds/nected-key-auth.yaml");
    for needle in [
        "failure_policy: FAIL_RELOAD",
        "normalize_path: true",
        "merge_slashes: true",
        "path_with_escaped_slashes_action: REJECT_REQUEST",
    ] {
        assert!(
            yaml.contains(needle) || resource.contains(needle),
            "envoy/envoy.yaml lacks {needle}"
        );
    }
}

#[test]
fn compose_file_pins_the_same_envoy_version() {
    let compose = read("envoy/docker-compose.yaml");
    let makefile = read("Makefile");
    let version = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION := "))
        .expect("ENVOY_VERSION in Makefile")
        .trim();
    assert_eq!(version, "1.40.0");
    assert!(
        compose.contains(&format!("image: envoyproxy/envoy:v{version}")),
        "docker-compose.yaml must use envoyproxy/envoy:v{version}"
    );
    assert!(compose.contains("envoy/envoy.yaml") && compose.contains("nected_key_auth.wasm"));
}

/// `nected-key render --gateway G --config envoy/plugin-config.json`.
pub fn rendered_demo(gateway: &str) -> String {
    render(gateway, "envoy/plugin-config.json")
}

/// `nected-key render --gateway G --config FILE` (FILE from the repository root).
pub fn render(gateway: &str, file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nected-key"))
        .args(["render", "--gateway", gateway, "--config", file])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render {gateway}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The shipped `make run` setup (envoy/envoy.yaml, its ECDS folder holding
/// `resource`), on free ports, in the scratch folder.
pub fn demo_setup(resource: &str) -> Setup {
    let mut setup = Setup::new("");
    setup.bootstrap =
        Some(shipped_bootstrap("envoy/envoy.yaml").replace("envoy/ecds", "{{DIR}}/ecds"));
    setup.files = vec![(
        "ecds/nected-key-auth.yaml".into(),
        resource.replace(
            "target/wasm32-wasip1/release/nected_key_auth.wasm",
            "{{WASM}}",
        ),
    )];
    setup
}

#[test]
fn make_run_curl_lines_work_against_the_shipped_config() {
    let envoy = Envoy::start(
        "shipped",
        demo_setup(&read("envoy/ecds/nected-key-auth.yaml")),
    );
    let keys = demo_keys();
    let script = read("scripts/run.sh");
    let mut t = Cases::default();
    let mut lines = 0;
    let mut previous = "";
    for line in script.lines() {
        let line = line.trim();
        if let (Some(cmd), Some(want)) =
            (line.strip_prefix("curl -i "), previous.split("-> ").nth(1))
        {
            lines += 1;
            let want: u16 = want.split_whitespace().next().unwrap().parse().unwrap();
            let mut cmd = cmd.replace("127.0.0.1:10000", &format!("127.0.0.1:{}", envoy.port()));
            for (name, value) in &keys {
                cmd = cmd.replace(&format!("${{{name}}}"), value);
            }
            // The printed lines use simple single-quoted arguments.
            let args: Vec<String> = cmd
                .split('\'')
                .enumerate()
                .flat_map(|(i, part)| {
                    if i % 2 == 1 {
                        vec![part.to_owned()]
                    } else {
                        part.split_whitespace().map(str::to_owned).collect()
                    }
                })
                .collect();
            let r = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
            t.check(
                line,
                r.status == want,
                format_args!("want {want}, got {} {}", r.status, r.body_str()),
            );
            if line.contains("DEMO_KEY_BILLING") {
                let e = r.echo();
                t.check(
                    "billing demo: client forwarded, key stripped",
                    e.all("x-nected-client") == ["billing"] && !e.has("nected-api-key"),
                    &e.headers,
                );
            }
        }
        previous = line;
    }
    t.check(
        "make run prints the four required curl lines and more",
        lines >= 4,
        lines,
    );
    t.finish();
}
