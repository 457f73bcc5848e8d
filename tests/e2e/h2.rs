//! A minimal HTTP/2 client over a raw byte stream (h2c over TCP, or TLS
//! through `openssl s_client`), for requests no ordinary client sends:
//! header values with surrounding spaces and tabs, request trailers. It
//! encodes header fields as HPACK literals (never Huffman, never indexed),
//! asks the server for an empty dynamic table, and reads back `:status`
//! (static table entry or decimal digits, Huffman-coded or not) and the body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;

/// What came back on one stream.
#[derive(Debug, Clone, Default)]
pub struct H2Response {
    /// 0 when the stream was reset or the connection closed first.
    pub status: u16,
    pub body: Vec<u8>,
    pub reset: bool,
}

impl H2Response {
    pub fn reached_upstream(&self) -> bool {
        self.status == 200 && self.body.starts_with(b"{\"method\"")
    }

    /// The echo upstream's view (path, headers), when it answered.
    pub fn echo(&self) -> Option<serde_json::Value> {
        self.reached_upstream()
            .then(|| serde_json::from_slice(&self.body).ok())
            .flatten()
    }
}

/// Either end of the byte stream.
pub enum Transport {
    Tcp(TcpStream),
    /// `openssl s_client -alpn h2 -quiet`: its stdin/stdout carry the
    /// plaintext of the TLS connection.
    Tls(Child, ChildStdin, ChildStdout),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Tls(_, _, out) => out.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Tls(_, input, _) => input.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Tcp(s) => s.flush(),
            Transport::Tls(_, input, _) => input.flush(),
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Transport::Tls(child, _, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/2 connection; streams are used one after the other.
pub struct H2 {
    io: Transport,
    next_stream: u32,
    /// Bytes read past the last frame.
    pending: Vec<u8>,
    pub goaway: bool,
}

impl H2 {
    /// h2c with prior knowledge.
    pub fn connect(port: u16) -> H2 {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_nodelay(true).unwrap();
        H2::start(Transport::Tcp(s))
    }

    /// HTTP/2 over TLS (ALPN h2), through `openssl s_client`.
    pub fn connect_tls(port: u16) -> H2 {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-ign_eof", "-alpn", "h2"])
            .args(["-servername", "localhost", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client runs");
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        H2::start(Transport::Tls(child, input, output))
    }

    fn start(io: Transport) -> H2 {
        let mut h2 = H2 {
            io,
            next_stream: 1,
            pending: Vec::new(),
            goaway: false,
        };
        h2.io
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .unwrap();
        // HEADER_TABLE_SIZE 0: responses never refer to a dynamic table;
        // ENABLE_PUSH 0.
        let mut settings = Vec::new();
        for (id, value) in [(1u16, 0u32), (2, 0)] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        h2.frame(SETTINGS, 0, 0, &settings);
        h2
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len() as u32;
        let mut f = Vec::with_capacity(9 + payload.len());
        f.extend_from_slice(&len.to_be_bytes()[1..]);
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.io.write_all(&f).unwrap();
        self.io.flush().unwrap();
    }

    fn read_frame(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.pending.len() >= 9 {
                let len = u32::from_be_bytes([0, self.pending[0], self.pending[1], self.pending[2]])
                    as usize;
                if self.pending.len() >= 9 + len {
                    let kind = self.pending[3];
                    let flags = self.pending[4];
                    let stream = u32::from_be_bytes([
                        self.pending[5],
                        self.pending[6],
                        self.pending[7],
                        self.pending[8],
                    ]) & 0x7fff_ffff;
                    let payload = self.pending[9..9 + len].to_vec();
                    self.pending.drain(..9 + len);
                    return Some((kind, flags, stream, payload));
                }
            }
            let mut chunk = [0u8; 16384];
            match self.io.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends one request: `headers` (pseudo-headers first, in the order
    /// given, values exactly as given), an optional body, optional
    /// trailers; returns the response.
    pub fn request(
        &mut self,
        headers: &[(&str, &[u8])],
        body: Option<&[u8]>,
        trailers: &[(&str, &[u8])],
    ) -> H2Response {
        let stream = self.next_stream;
        self.next_stream += 2;
        let only_headers = body.is_none() && trailers.is_empty();
        let flags = END_HEADERS | if only_headers { END_STREAM } else { 0 };
        self.frame(HEADERS, flags, stream, &encode(headers));
        if let Some(body) = body {
            let flags = if trailers.is_empty() { END_STREAM } else { 0 };
            self.frame(DATA, flags, stream, body);
        }
        if !trailers.is_empty() {
            self.frame(HEADERS, END_HEADERS | END_STREAM, stream, &encode(trailers));
        }
        self.response(stream)
    }

    /// A GET with extra headers (names lower-case, values as given).
    pub fn get(&mut self, authority: &str, path: &str, extra: &[(&str, &[u8])]) -> H2Response {
        let mut headers: Vec<(&str, &[u8])> = vec![
            (":method", b"GET"),
            (":scheme", b"http"),
            (":authority", authority.as_bytes()),
            (":path", path.as_bytes()),
        ];
        headers.extend_from_slice(extra);
        self.request(&headers, None, &[])
    }

    fn response(&mut self, stream: u32) -> H2Response {
        let mut r = H2Response::default();
        let mut block = Vec::new();
        let mut in_headers = false;
        while let Some((kind, flags, id, payload)) = self.read_frame() {
            match kind {
                SETTINGS if flags & ACK == 0 => self.frame(SETTINGS, ACK, 0, &[]),
                PING if flags & ACK == 0 => self.frame(PING, ACK, 0, &payload),
                GOAWAY => {
                    self.goaway = true;
                    // Frames already in flight for our stream still count.
                    let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                    if last < stream {
                        return r;
                    }
                }
                HEADERS | CONTINUATION if id == stream => {
                    let mut payload = &payload[..];
                    if kind == HEADERS {
                        // PADDED (0x8) and PRIORITY (0x20) are never sent by
                        // Envoy, but skip them if they are.
                        if flags & 0x8 != 0 {
                            let pad = payload[0] as usize;
                            payload = &payload[1..payload.len() - pad];
                        }
                        if flags & 0x20 != 0 {
                            payload = &payload[5..];
                        }
                    }
                    block.extend_from_slice(payload);
                    in_headers = flags & END_HEADERS == 0;
                    if !in_headers && r.status == 0 {
                        r.status = decode_status(&block).unwrap_or(0);
                    }
                    block.clear();
                    if flags & END_STREAM != 0 {
                        return r;
                    }
                }
                DATA if id == stream => {
                    let mut payload = &payload[..];
                    if flags & 0x8 != 0 {
                        let pad = payload[0] as usize;
                        payload = &payload[1..payload.len() - pad];
                    }
                    r.body.extend_from_slice(payload);
                    if flags & END_STREAM != 0 {
                        return r;
                    }
                }
                RST_STREAM if id == stream => {
                    r.reset = true;
                    return r;
                }
                _ => {}
            }
            let _ = in_headers;
        }
        r
    }
}

/// HPACK: an integer with an `n`-bit prefix, `flags` in the high bits.
fn put_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

/// Literal header fields without indexing, new names, raw strings.
fn encode(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        put_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        put_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

fn get_int(block: &[u8], at: &mut usize, n: u32) -> Option<usize> {
    let max = (1usize << n) - 1;
    let mut v = (*block.get(*at)? as usize) & max;
    *at += 1;
    if v < max {
        return Some(v);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*at)? as usize;
        *at += 1;
        v += (b & 127) << shift;
        shift += 7;
        if b & 128 == 0 {
            return Some(v);
        }
    }
}

/// A string literal: (huffman, bytes).
fn get_str<'a>(block: &'a [u8], at: &mut usize) -> Option<(bool, &'a [u8])> {
    let huffman = block.get(*at)? & 0x80 != 0;
    let len = get_int(block, at, 7)?;
    let s = block.get(*at..*at + len)?;
    *at += len;
    Some((huffman, s))
}

/// Decimal digits from their HPACK Huffman codes (RFC 7541, Appendix B):
/// `0`–`2` are 5 bits (00000–00010), `3`–`9` are 6 bits (011001–011111).
fn huffman_digits(data: &[u8]) -> Option<String> {
    let bits: Vec<u8> = data
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < bits.len() {
        let rest = &bits[i..];
        if rest.iter().all(|&b| b == 1) && rest.len() < 8 {
            break; // padding
        }
        let code = |n: usize| {
            rest.get(..n)
                .map(|c| c.iter().fold(0u8, |a, &b| a << 1 | b))
        };
        match code(5)? {
            c @ 0..=2 => {
                out.push((b'0' + c) as char);
                i += 5;
            }
            _ => match code(6)? {
                c @ 0x19..=0x1f => {
                    out.push((b'0' + 3 + (c - 0x19)) as char);
                    i += 6;
                }
                _ => return None,
            },
        }
    }
    Some(out)
}

/// `:status` from a response header block (static table 8–14, or a
/// literal with the `:status` name index).
fn decode_status(block: &[u8]) -> Option<u16> {
    const STATIC: [(usize, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        if b & 0x80 != 0 {
            let index = get_int(block, &mut at, 7)?;
            if let Some((_, s)) = STATIC.iter().find(|(i, _)| *i == index) {
                return Some(*s);
            }
            continue;
        }
        if b & 0xe0 == 0x20 {
            get_int(block, &mut at, 5)?; // table size update
            continue;
        }
        let prefix = if b & 0x40 != 0 { 6 } else { 4 };
        let index = get_int(block, &mut at, prefix)?;
        if index == 0 {
            get_str(block, &mut at)?;
        }
        let (huffman, value) = get_str(block, &mut at)?;
        if (8..=14).contains(&index) {
            let text = if huffman {
                huffman_digits(value)?
            } else {
                String::from_utf8(value.to_vec()).ok()?
            };
            return text.parse().ok();
        }
    }
    None
}

#[test]
fn hpack_status_decoding() {
    assert_eq!(decode_status(&[0x88]), Some(200));
    assert_eq!(decode_status(&[0x20, 0x8d]), Some(404));
    // Literal without indexing, name index 8, raw "401".
    assert_eq!(decode_status(&[0x08, 0x03, b'4', b'0', b'1']), Some(401));
    // Literal with incremental indexing, name index 8, Huffman "401":
    // 011010 00000 00001.
    assert_eq!(decode_status(&[0x48, 0x82, 0x68, 0x01]), Some(401));
    // "503": 011011 00000 011001, then 111 of padding.
    assert_eq!(huffman_digits(&[0x6c, 0x0c, 0xff]).as_deref(), Some("503"));
    assert_eq!(huffman_digits(&[0x6c, 0x0c, 0xdf]).as_deref(), None);
    let mut v = Vec::new();
    put_int(&mut v, 0, 7, 300);
    let mut at = 0;
    assert_eq!(get_int(&v, &mut at, 7), Some(300));
}
