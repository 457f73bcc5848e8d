//! Step 2 (host part): the request host and the route host patterns.
//!
//! The host is `:authority` (or `host`), compared lower-case, with its port
//! removed (`[v6]:port` aware) and one trailing `.` dropped. An empty host,
//! an empty label (`a..example.com`, `host..`, `.example.com`), one holding
//! `,`, `@`, white space or a control character, an unbracketed IPv6
//! address or a port that is not all digits is ambiguous and refused.

/// The host part of an authority, as a slice of it; compare it with
/// [`HostPattern::matches`], which ignores ASCII case.
pub fn normalize(authority: &[u8]) -> Option<&[u8]> {
    // One pass: refused bytes, where the first `:` is, whether there is a
    // second, and whether two dots touch (an empty label).
    let mut colon = None;
    let mut colons = 0u32;
    let mut dots = false;
    let mut previous = 0u8;
    for (at, &b) in authority.iter().enumerate() {
        match b {
            // Controls, white space (all at or below space), `,`, `@`.
            0..=0x20 | 0x7f | b',' | b'@' => return None,
            b':' => {
                colons += 1;
                colon.get_or_insert(at);
            }
            b'.' => dots |= previous == b'.',
            _ => {}
        }
        previous = b;
    }
    let (host, port) = if authority.first() == Some(&b'[') {
        bracketed(authority)?
    } else {
        if colons > 1 || dots {
            return None;
        }
        let (host, port) = match colon {
            Some(at) => (
                authority.get(..at).unwrap_or_default(),
                authority.get(at + 1..).unwrap_or_default(),
            ),
            None => (authority, &[][..]),
        };
        let host = host.strip_suffix(b".").unwrap_or(host);
        // Empty labels: `..` was refused above; the ends are left.
        if host.first() == Some(&b'.') || host.last() == Some(&b'.') {
            return None;
        }
        (host, port)
    };
    if host.is_empty() || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(host)
}

/// `[v6]` and its port (empty when none) from an authority that starts
/// with `[`; `None` when what follows `]` is not `:port`.
fn bracketed(authority: &[u8]) -> Option<(&[u8], &[u8])> {
    let close = authority.iter().position(|&b| b == b']')?;
    let (host, rest) = authority.split_at(close + 1);
    let port = match rest.split_first() {
        None => &[][..],
        Some((b':', port)) => port,
        Some(_) => return None,
    };
    Some((host, port))
}

/// A `routes[].hosts` entry, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `api.example.com`, `10.0.0.1`, `[::1]`.
    Exact(Box<[u8]>),
    /// `*.example.com`, stored as `.example.com`: one or more labels before it.
    Suffix(Box<[u8]>),
}

impl HostPattern {
    /// From a config entry that passed [`valid_pattern`].
    pub fn new(pattern: &str) -> HostPattern {
        let lower = pattern.to_ascii_lowercase().into_bytes();
        match lower.strip_prefix(b"*") {
            Some(suffix) => HostPattern::Suffix(suffix.into()),
            None => HostPattern::Exact(lower.into()),
        }
    }

    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Suffix(suffix) => {
                let Some(cut) = host.len().checked_sub(suffix.len()) else {
                    return false;
                };
                let (labels, tail) = host.split_at(cut);
                !labels.is_empty()
                    && !labels.starts_with(b".")
                    && !labels.ends_with(b".")
                    && tail.eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// A host name, IPv4 address or bracketed IPv6 literal, optionally behind
/// `*.`; no port, no trailing dot. Any case (compared lower-case).
pub fn valid_pattern(s: &str) -> bool {
    let name = s.strip_prefix("*.").unwrap_or(s);
    if let Some(inner) = name.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return name.len() == s.len()
            && !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The pattern above as an ECMA-262 regular expression (for the schema).
pub const PATTERN_REGEX: &str =
    r"^((\*\.)?[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*|\[[0-9A-Fa-f:.]+\])$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("api.example.com", Some("api.example.com")),
            ("API.Example.COM", Some("API.Example.COM")),
            ("api.example.com:8443", Some("api.example.com")),
            ("api.example.com.", Some("api.example.com")),
            ("api.example.com.:80", Some("api.example.com")),
            ("api.example.com:", Some("api.example.com")),
            ("[::1]:10000", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("10.0.0.1:80", Some("10.0.0.1")),
            ("", None),
            (":80", None),
            (".", None),
            ("..", None),
            ("a..example.com", None),
            ("secure.example.com..", None),
            ("host..", None),
            ("host..:80", None),
            (".example.com", None),
            ("a.example.com.", Some("a.example.com")),
            ("a,b", None),
            ("user@host", None),
            ("a b", None),
            ("a\tb", None),
            ("host:8x", None),
            ("host:80:90", None),
            ("::1", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[::1]:a", None),
        ];
        for (input, want) in cases {
            let got = normalize(input.as_bytes()).map(|h| std::str::from_utf8(h).unwrap());
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    /// The implementation `normalize` replaced (several passes), kept to
    /// check it against.
    fn normalize_reference(authority: &[u8]) -> Option<&[u8]> {
        if authority
            .iter()
            .any(|&b| matches!(b, b',' | b'@') || b.is_ascii_whitespace() || b < 0x20 || b == 0x7f)
        {
            return None;
        }
        let (host, port) = if authority.first() == Some(&b'[') {
            bracketed(authority)?
        } else {
            let mut parts = authority.splitn(3, |&b| b == b':');
            let host = parts.next().unwrap_or_default();
            let port = parts.next().unwrap_or_default();
            if parts.next().is_some() {
                return None;
            }
            let host = host.strip_suffix(b".").unwrap_or(host);
            if host.split(|&b| b == b'.').any(<[u8]>::is_empty) {
                return None;
            }
            (host, port)
        };
        if host.is_empty() || !port.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(host)
    }

    #[test]
    fn one_pass_agrees_with_reference() {
        let alphabet = [
            b'a', b'.', b':', b'1', b'[', b']', b' ', b'@', 0x0c, 0x7f, 0xc3,
        ];
        let mut stack: Vec<Vec<u8>> = vec![vec![]];
        while let Some(a) = stack.pop() {
            assert_eq!(normalize(&a), normalize_reference(&a), "{a:?}");
            if a.len() < 6 {
                for &b in &alphabet {
                    let mut next = a.clone();
                    next.push(b);
                    stack.push(next);
                }
            }
        }
    }

    #[test]
    fn patterns() {
        let exact = HostPattern::new("API.example.com");
        assert!(exact.matches(b"api.example.com"));
        assert!(exact.matches(b"Api.Example.Com"));
        assert!(!exact.matches(b"x.api.example.com"));
        let wild = HostPattern::new("*.example.com");
        assert!(wild.matches(b"a.example.com"));
        assert!(wild.matches(b"a.b.EXAMPLE.com"));
        assert!(!wild.matches(b"example.com"));
        assert!(!wild.matches(b".example.com"));
        assert!(!wild.matches(b"a..example.com"));
        assert!(!wild.matches(b"aexample.com"));
        assert!(!wild.matches(b"com"));
    }

    #[test]
    fn pattern_validation() {
        for ok in [
            "a",
            "api.example.com",
            "*.example.com",
            "EXAMPLE.com",
            "10.0.0.1",
            "[::1]",
            "x_y-z",
        ] {
            assert!(valid_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "example.com.",
            "a..b",
            "a:80",
            "*.[::1]",
            "[]",
            "a b",
            "*x.com",
            "a/b",
        ] {
            assert!(!valid_pattern(bad), "{bad}");
        }
    }
}
