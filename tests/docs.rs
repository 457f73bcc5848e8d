#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The documentation can be followed: every relative link in every Markdown
//! file of the repository points at a file or folder that exists (and, with
//! a `#fragment`, at a heading of that file), and every `make <target>` the
//! Markdown names in code is a target of the Makefile.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Markdown files, skipping build output and installed tools.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().into_string().unwrap();
            if entry.file_type().unwrap().is_dir() {
                if !matches!(
                    name.as_str(),
                    ".git" | ".tools" | "target" | "dist" | "node_modules" | "tmp"
                ) {
                    walk(&path, out);
                }
            } else if name.ends_with(".md") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo(), &mut out);
    out.sort();
    out
}

/// Prose lines (outside fenced code) with inline code removed, and the code:
/// fenced blocks and inline code spans.
struct Split {
    prose: Vec<String>,
    code: Vec<String>,
}

fn split(text: &str) -> Split {
    let mut split = Split {
        prose: Vec::new(),
        code: Vec::new(),
    };
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(f) = fence {
            if trimmed.starts_with(f) {
                fence = None;
            } else {
                split.code.push(line.to_owned());
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        let mut prose = String::new();
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            prose.push_str(&rest[..start]);
            let ticks = rest[start..].bytes().take_while(|b| *b == b'`').count();
            let after = &rest[start + ticks..];
            match after.find(&"`".repeat(ticks)) {
                Some(end) => {
                    split.code.push(after[..end].to_owned());
                    rest = &after[end + ticks..];
                }
                None => {
                    rest = after;
                }
            }
        }
        prose.push_str(rest);
        split.prose.push(prose);
    }
    split
}

/// Link destinations: `[text](dest)`, `![alt](dest)` and `[ref]: dest`.
fn links(prose: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let dest = after[..end].trim();
            let dest = dest.split_whitespace().next().unwrap_or("");
            out.push(dest.trim_matches(['<', '>']).to_owned());
            rest = &after[end..];
        }
        let t = line.trim_start();
        if t.starts_with('[') {
            if let Some((_, dest)) = t.split_once("]: ") {
                out.push(dest.split_whitespace().next().unwrap_or("").to_owned());
            }
        }
    }
    out
}

/// GitHub's heading anchors: lower case, punctuation dropped, spaces to `-`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 1;
        while out.contains(&candidate) {
            candidate = format!("{slug}-{n}");
            n += 1;
        }
        out.insert(candidate);
    }
    out
}

/// Problems with the relative links of one Markdown file.
fn broken_links(file: &Path, text: &str) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut broken = Vec::new();
    for dest in links(&split(text).prose) {
        if dest.is_empty()
            || dest.contains("://")
            || dest.starts_with("mailto:")
            || dest.starts_with("//")
        {
            continue;
        }
        checked += 1;
        let (path, fragment) = match dest.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (dest.as_str(), None),
        };
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap().join(path)
        };
        if !target.exists() {
            broken.push(format!("{}: {dest}: no such file", file.display()));
            continue;
        }
        if let Some(fragment) = fragment {
            if target.is_file() && target.extension().is_some_and(|e| e == "md") {
                let heads = anchors(&std::fs::read_to_string(&target).unwrap());
                if !heads.contains(fragment) {
                    broken.push(format!("{}: {dest}: no such heading", file.display()));
                }
            }
        }
    }
    (checked, broken)
}

/// `make` targets named in code: `make run`, `make build crash-build envoy`.
/// Shell comments are prose (`# with make run it is live`), not commands.
fn make_targets(code: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.iter().flat_map(|snippet| snippet.lines()) {
        let command = match line.find('#') {
            Some(i) if line[..i].trim().is_empty() || line[..i].ends_with([' ', '\t']) => {
                &line[..i]
            }
            _ => line,
        };
        let words: Vec<&str> = command.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            if *w != "make" {
                continue;
            }
            for t in &words[i + 1..] {
                if t.contains('=') || t.starts_with('-') {
                    continue;
                }
                let ok = !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && t.starts_with(|c: char| c.is_ascii_lowercase());
                if !ok {
                    break;
                }
                out.insert((*t).to_owned());
            }
        }
    }
    out
}

/// Targets the Makefile defines (`name:` or `a b:` rule lines).
fn makefile_targets() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with(['\t', ' ', '#', '.', '$']) {
            continue;
        }
        let Some((head, tail)) = line.split_once(':') else {
            continue;
        };
        if tail.starts_with('=') || head.contains('=') {
            continue;
        }
        out.extend(head.split_whitespace().map(str::to_owned));
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let files = markdown_files();
    assert!(files.len() >= 10, "{files:?}");
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let (n, b) = broken_links(file, &std::fs::read_to_string(file).unwrap());
        checked += n;
        broken.extend(b);
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 40, "only {checked} relative links found");
}

#[test]
fn every_make_target_named_exists() {
    let defined = makefile_targets();
    for t in ["build", "run", "test", "dist", "bench", "soak", "fuzz"] {
        assert!(
            defined.contains(t),
            "Makefile parse: {t} missing from {defined:?}"
        );
    }
    let mut named = BTreeSet::new();
    let mut missing = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for t in make_targets(&split(&text).code) {
            if !defined.contains(&t) {
                missing.push(format!("{}: make {t}", file.display()));
            }
            named.insert(t);
        }
    }
    assert!(
        missing.is_empty(),
        "no such make target:\n{}",
        missing.join("\n")
    );
    assert!(named.len() >= 8, "only {named:?} named");
}

#[test]
fn the_checks_catch_mistakes() {
    let dir = repo().join("docs");
    let file = dir.join("README.md");
    let text = "[ok](../README.md) [gone](nope.md) `[code](nope.md)`\n\
                [anchor](configuration.md#fields) [bad](configuration.md#nope)\n\
                ```\n[fenced](nope.md)\n```\n";
    let (checked, broken) = broken_links(&file, text);
    assert_eq!(checked, 4);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(broken[0].contains("nope.md") && broken[1].contains("#nope"));

    let code = split(
        "run `make build crash-build envoy && x`, not make prose\n\
         ```sh\nFOO=1 make soak # long\nx # with make run it is live\n```\n",
    )
    .code;
    assert_eq!(
        make_targets(&code),
        BTreeSet::from(["build", "crash-build", "envoy", "soak"].map(str::to_owned))
    );
    let heads = anchors("# A\n## Soak: `make soak`\n```\n# not a heading\n```\n## A\n");
    assert_eq!(
        heads,
        BTreeSet::from(["a", "soak-make-soak", "a-1"].map(str::to_owned))
    );
}
