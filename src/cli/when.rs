//! Times on the command line: RFC 3339, `now`, `now+<n><s|m|h|d>`; and
//! durations `<n><s|m|h|d>`. All in Unix nanoseconds.

use std::time::{SystemTime, UNIX_EPOCH};

const NS: i128 = 1_000_000_000;

/// The wall clock, in Unix nanoseconds.
pub fn now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// `<n><s|m|h|d>`, n a positive integer.
pub fn parse_duration(s: &str) -> Option<i128> {
    let unit = match s.bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86_400,
        _ => return None,
    };
    let digits = s.get(..s.len() - 1)?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i128 = digits.parse().ok()?;
    (n > 0).then_some(n * unit * NS)
}

/// An instant: RFC 3339, `now` or `now+<duration>`, relative to `now`.
pub fn parse_instant(s: &str, now: i128) -> Option<i128> {
    if s == "now" {
        return Some(now);
    }
    if let Some(d) = s.strip_prefix("now+") {
        return Some(now + parse_duration(d)?);
    }
    crate::config::parse_instant(s)
}

/// RFC 3339 in UTC, to the second (`2026-12-01T10:00:00Z`).
pub fn rfc3339(nanos: i128) -> String {
    let secs = i64::try_from(nanos.div_euclid(NS)).unwrap_or(0);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => "(out of range)".into(),
    }
}

/// A short human form of a span: `3d 4h`, `5h 2m`, `40s`.
pub fn span(nanos: i128) -> String {
    let s = nanos.abs() / NS;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_instants() {
        let now = 1_800_000_000 * NS;
        assert_eq!(parse_instant("now", now), Some(now));
        assert_eq!(parse_instant("now+90d", now), Some(now + 90 * 86_400 * NS));
        assert_eq!(parse_instant("now+15m", now), Some(now + 900 * NS));
        let t = crate::config::parse_instant("2027-01-15T08:00:00Z").unwrap();
        assert_eq!(parse_instant("2027-01-15T08:00:00Z", now), Some(t));
        for bad in [
            "now+",
            "now+d",
            "now+-1d",
            "now+1w",
            "now-1d",
            "tomorrow",
            "now+0d",
            "2027-01-15",
        ] {
            assert_eq!(parse_instant(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn durations_and_formats() {
        assert_eq!(parse_duration("7d"), Some(7 * 86_400 * NS));
        assert_eq!(parse_duration("30s"), Some(30 * NS));
        assert_eq!(parse_duration("7"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        let t = crate::config::parse_instant("2026-12-01T10:20:30Z").unwrap();
        assert_eq!(rfc3339(t), "2026-12-01T10:20:30Z");
        assert_eq!(span(3 * 86_400 * NS + 4 * 3600 * NS), "3d 4h");
        assert_eq!(span(-(40 * NS)), "40s");
    }
}
