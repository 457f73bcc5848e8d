//! `nected-key usage`: the per-key counters of a running Envoy, read from
//! its admin `/stats`, and what they say about a configuration.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Requests a key passed and was refused, by key id.
pub type Counts = BTreeMap<String, (u64, u64)>;

/// Reads `/stats` from an Envoy admin address `http://HOST:PORT[/prefix]`.
pub fn fetch_stats(admin: &str) -> Result<String, String> {
    if admin.starts_with("https://") {
        return Err(format!(
            "{admin}: https is not supported; reach the admin port over http (keep it private)"
        ));
    }
    // `127.0.0.1:9901` is taken as `http://127.0.0.1:9901`.
    let rest = admin.strip_prefix("http://").unwrap_or(admin);
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    let prefix = prefix.trim_end_matches('/');
    let target = format!("{prefix}/stats?filter=nected_key_auth");
    let connect = |a: &str| -> std::io::Result<TcpStream> {
        use std::net::ToSocketAddrs;
        let mut last = None;
        for addr in a.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = connect(&with_port).map_err(|e| format!("{admin}: cannot connect: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "GET {target} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: nected-key\r\nconnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{admin}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("{admin}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{admin}: not an HTTP response"))?;
    let head = String::from_utf8_lossy(response.get(..split).unwrap_or_default()).to_lowercase();
    let body = response.get(split + 4..).unwrap_or_default();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{admin}{target}: HTTP status {status}"));
    }
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body).ok_or_else(|| format!("{admin}: bad chunked response"))?
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(body.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = body.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// The per-key counters in `/stats` text (`...nected_key_auth.key.<id>.allowed: N`).
pub fn parse_stats(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(": ") else {
            continue;
        };
        let Some(at) = name.find("nected_key_auth.key.") else {
            continue;
        };
        let rest = name.get(at + "nected_key_auth.key.".len()..).unwrap_or("");
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        if let Some(id) = rest.strip_suffix(".allowed") {
            counts.entry(id.to_owned()).or_default().0 += value;
        } else if let Some(id) = rest.strip_suffix(".refused") {
            counts.entry(id.to_owned()).or_default().1 += value;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_key_id_with_dots() {
        let text = "wasmcustom.nected_key_auth.allowed: 3\n\
                    wasmcustom.nected_key_auth.key.billing.2026-11.allowed: 2\n\
                    wasmcustom.nected_key_auth.key.billing.2026-11.refused: 1\n\
                    wasmcustom.nected_key_auth.key.cron.refused: 4\n\
                    wasmcustom.nected_key_auth.denied.revoked: 5\n";
        let c = parse_stats(text);
        assert_eq!(c.len(), 2);
        assert_eq!(c["billing.2026-11"], (2, 1));
        assert_eq!(c["cron"], (0, 4));
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"4\r\nabcd\r\n2;x=y\r\nef\r\n0\r\n\r\n").unwrap(),
            b"abcdef"
        );
        assert!(dechunk(b"4\r\nab").is_none());
    }
}
