//! The proxy-wasm serialization of a header map, shared by every host:
//! `count: u32` (little endian), `count × (name_len: u32, value_len: u32)`,
//! then each name and each value followed by a NUL byte.

/// The `(name, value)` pairs of a serialized map, borrowed from it. A
/// malformed map yields the pairs that parsed cleanly, then stops.
pub fn pairs(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let u32_at = move |at: usize| -> Option<usize> {
        let bytes = buf.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
    };
    let count = u32_at(0).unwrap_or(0);
    let mut data = count.checked_mul(8).and_then(|n| n.checked_add(4));
    (0..count).map_while(move |i| {
        let lengths = i.checked_mul(8)?.checked_add(4)?;
        let name_len = u32_at(lengths)?;
        let value_len = u32_at(lengths.checked_add(4)?)?;
        let name_start = data?;
        let name_end = name_start.checked_add(name_len)?;
        let value_start = name_end.checked_add(1)?;
        let value_end = value_start.checked_add(value_len)?;
        let name = buf.get(name_start..name_end)?;
        let value = buf.get(value_start..value_end)?;
        data = value_end.checked_add(1);
        Some((name, value))
    })
}

/// Serializes a header map.
pub fn serialize_map(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let map = serialize_map(&[(":path", "/a"), ("x", ""), ("k", "v\u{e9}")]);
        let got: Vec<_> = pairs(&map).collect();
        assert_eq!(
            got,
            vec![
                (&b":path"[..], &b"/a"[..]),
                (&b"x"[..], &b""[..]),
                (&b"k"[..], "v\u{e9}".as_bytes())
            ]
        );
    }

    #[test]
    fn empty_and_truncated_maps() {
        assert_eq!(pairs(&[]).count(), 0);
        let map = serialize_map(&[("a", "1"), ("b", "2")]);
        for cut in 0..map.len() {
            // Never panics, never yields more than is there.
            assert!(pairs(&map[..cut]).count() <= 2);
        }
        // A count far larger than the buffer.
        assert_eq!(pairs(&[0xff, 0xff, 0xff, 0xff]).count(), 0);
    }
}
