#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! `make dist` output, read back: the versioned filter and its checksum,
//! the `nected-key` binary, and the OCI image of the filter in the form
//! Istio's and Envoy Gateway's Wasm image fetchers accept (the "compat"
//! variant: one `application/vnd.oci.image.layer.v1.tar+gzip` layer whose
//! archive holds `plugin.wasm`). Every blob is checked against its digest
//! and size, the manifest and config parse, and the layer holds exactly the
//! bytes of the released `.wasm`.
//!
//! `make test` runs `make dist` first and points `NKA_DIST` at `dist/`.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn dist() -> PathBuf {
    let dir = std::env::var_os("NKA_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dist"));
    assert!(
        dir.join(format!("nected_key_auth-{VERSION}.wasm"))
            .is_file(),
        "{}: no release artifacts for {VERSION}; run `make test` (or `make dist`)",
        dir.display()
    );
    dir
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(bytes: &[u8], what: &str) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"))
}

fn wasm() -> Vec<u8> {
    read(&dist().join(format!("nected_key_auth-{VERSION}.wasm")))
}

/// A descriptor's blob: present under `blobs/sha256/`, its SHA-256 equal to
/// the digest it is named by, its length equal to the declared size.
fn blob(layout: &Path, descriptor: &Value, media_type: &str) -> Vec<u8> {
    assert_eq!(descriptor["mediaType"], media_type, "{descriptor}");
    let digest = descriptor["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let bytes = read(&layout.join("blobs/sha256").join(hex));
    assert_eq!(sha256(&bytes), hex, "blob content does not match {digest}");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "size of {digest}"
    );
    bytes
}

fn run(program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", out.status);
    out.stdout
}

#[test]
fn dist_wasm_is_the_built_filter_with_its_checksum() {
    let dir = dist();
    let wasm = wasm();
    assert!(wasm.starts_with(b"\0asm\x01\0\0\0"), "not a wasm module");
    let name = format!("nected_key_auth-{VERSION}.wasm");
    if let Some(built) = std::env::var_os("NKA_WASM") {
        assert!(read(Path::new(&built)) == wasm, "{name} is not {built:?}");
    }
    let line = String::from_utf8(read(&dir.join(format!("{name}.sha256")))).unwrap();
    assert_eq!(line, format!("{}  {name}\n", sha256(&wasm)));
}

#[test]
fn sha256sums_cover_every_file_and_match() {
    let dir = dist();
    let sums = String::from_utf8(read(&dir.join("SHA256SUMS"))).unwrap();
    let mut listed = BTreeSet::new();
    for line in sums.lines() {
        let (digest, file) = line.split_once("  ").expect("`<hex>  <file>` lines");
        assert_eq!(sha256(&read(&dir.join(file))), digest, "{file}");
        listed.insert(file.to_owned());
    }
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|f| f != "SHA256SUMS" && !f.ends_with(".sha256") && !f.ends_with(".digest"))
        .collect();
    assert_eq!(listed, files);
}

#[test]
fn dist_cli_runs_on_this_machine() {
    let dir = dist();
    let cli: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("nected-key-{VERSION}-")))
        })
        .collect();
    assert_eq!(cli.len(), 1, "one nected-key binary in {}", dir.display());
    let out = run(cli[0].to_str().unwrap(), &["hash"], b"demo-key\n");
    assert_eq!(
        String::from_utf8(out).unwrap().trim(),
        sha256(b"demo-key"),
        "`nected-key hash` from dist/"
    );
}

#[test]
fn oci_image_reads_back_as_the_compat_wasm_image() {
    let dir = dist();
    let layout = dir.join(format!("nected_key_auth-{VERSION}.oci"));
    let wasm = wasm();

    let marker = json(&read(&layout.join("oci-layout")), "oci-layout");
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");

    // index.json: one manifest, tagged with the crate version.
    let index = json(&read(&layout.join("index.json")), "index.json");
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    let desc = &manifests[0];
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        VERSION
    );
    let manifest_bytes = blob(&layout, desc, MANIFEST);
    let manifest = json(&manifest_bytes, "manifest");
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        VERSION
    );

    // The digest the docs tell users to pin is this manifest's.
    let pinned = String::from_utf8(read(
        &dir.join(format!("nected_key_auth-{VERSION}.oci.digest")),
    ))
    .unwrap();
    assert_eq!(pinned.trim(), desc["digest"].as_str().unwrap());

    // Config: parses, one diff id.
    let config = json(&blob(&layout, &manifest["config"], CONFIG), "config");
    assert!(config["os"].is_string() && config["architecture"].is_string());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert_eq!(diff_ids.len(), 1, "{config}");

    // Exactly one layer (the compat variant; Istio and Envoy Gateway read
    // the last layer of an OCI image as tar+gzip and look for plugin.wasm).
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer_path = layout.join("blobs/sha256").join(
        layers[0]["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap(),
    );
    let layer = blob(&layout, &layers[0], LAYER);

    // The uncompressed archive is the diff id.
    let tar = run("gzip", &["-dc"], &layer);
    assert_eq!(
        diff_ids[0].as_str().unwrap(),
        format!("sha256:{}", sha256(&tar))
    );

    // It holds plugin.wasm and nothing else, with the released bytes.
    let layer_file = layer_path.to_str().unwrap();
    let listing = String::from_utf8(run("tar", &["-tzf", layer_file], b"")).unwrap();
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["plugin.wasm"]);
    let extracted = run("tar", &["-xzOf", layer_file, "plugin.wasm"], b"");
    assert!(
        extracted == wasm,
        "plugin.wasm in the image differs from the released .wasm"
    );

    // No stray blobs: the layout holds exactly manifest, config and layer.
    let named: BTreeSet<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().into_string().unwrap()))
        .collect();
    let referenced: BTreeSet<String> = [
        desc["digest"].as_str().unwrap(),
        manifest["config"]["digest"].as_str().unwrap(),
        layers[0]["digest"].as_str().unwrap(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(named, referenced);
}
