//! The attack battery's wire: HTTP/1.1 and h2 requests written as bytes over a TCP stream,
//! so request lines, header casing and framing reach the proxy exactly as a case spells them.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::STEP;

/// What came back: the status (0 for none) and the body; `closed`: whether the proxy
/// closed the connection after it (only looked at when a case asks).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub closed: Option<bool>,
}

impl Answer {
    pub fn code(&self) -> Option<i64> {
        serde_json::from_slice::<Value>(&self.body).ok()?["error"]["code"].as_i64()
    }
}

/// Writes `bytes` on a fresh connection and reads one HTTP/1.1 answer; with
/// `watch_close`, then waits up to a second for the proxy to close the connection (well
/// under the idle keep-alive timeout, which closes every connection in the end).
pub async fn h1(addr: SocketAddr, bytes: &[u8], watch_close: bool) -> Result<Answer, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.write_all(bytes).await.map_err(|e| e.to_string())?;
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(answer) = parse_h1(&seen) {
                return answer;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    return parse_h1(&seen).unwrap_or(Answer { status: 0, body: seen.clone(), closed: None });
                }
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    let mut answer = tokio::time::timeout(STEP, read).await.map_err(|_| "no answer: the proxy hangs".to_owned())?;
    if watch_close {
        let mut rest = [0u8; 1024];
        // End of stream (or a reset) at once: closed; still open a second later: kept alive.
        let closed = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut rest)).await;
        answer.closed = Some(matches!(closed, Ok(Ok(0) | Err(_))));
    }
    Ok(answer)
}

/// A whole HTTP/1.1 answer in `seen` (Content-Length or chunked), else `None`.
fn parse_h1(seen: &[u8]) -> Option<Answer> {
    let end = seen.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&seen[..end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let rest = &seen[end + 4..];
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
        })
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().ok()?;
        return (rest.len() >= len).then(|| Answer { status, body: rest[..len].to_vec(), closed: None });
    }
    if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        let mut body = Vec::new();
        let mut at = rest;
        loop {
            let line_end = at.windows(2).position(|w| w == b"\r\n")?;
            let size = usize::from_str_radix(String::from_utf8_lossy(&at[..line_end]).trim(), 16).ok()?;
            at = &at[line_end + 2..];
            if size == 0 {
                return Some(Answer { status, body, closed: None });
            }
            if at.len() < size + 2 {
                return None;
            }
            body.extend_from_slice(&at[..size]);
            at = &at[size + 2..];
        }
    }
    Some(Answer { status, body: rest.to_vec(), closed: None })
}

/// HPACK "literal without indexing, new name" for one field (names and values < 127 bytes).
fn hpack_literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    assert!(name.len() < 127 && value.len() < 127, "short fields only");
    block.push(0x00);
    block.push(name.len() as u8);
    block.extend_from_slice(name);
    block.push(value.len() as u8);
    block.extend_from_slice(value);
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// h2 with prior knowledge, written frame by frame: one request on stream 1 with these
/// header fields (HPACK literals, exactly as given) and `body`; the answer's status, 0
/// when the stream was reset or the connection closed.
pub async fn h2(addr: SocketAddr, fields: &[(Vec<u8>, Vec<u8>)], body: &[u8]) -> Result<Answer, String> {
    let mut block = Vec::new();
    for (name, value) in fields {
        hpack_literal(&mut block, name, value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    out.extend(h2_frame(0x1, 0x4, 1, &block));
    out.extend(h2_frame(0x0, 0x1, 1, body));
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.write_all(&out).await.map_err(|e| e.to_string())?;
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return Answer { status: 0, body: b"connection closed".to_vec(), closed: None };
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return Answer { status: 0, body: b"connection closed".to_vec(), closed: None };
            }
            let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            match head[3] {
                // RST_STREAM on our stream, GOAWAY: refused without an answer.
                0x3 if stream_id == 1 => return Answer { status: 0, body: b"stream reset".to_vec(), closed: None },
                0x7 => return Answer { status: 0, body: b"goaway".to_vec(), closed: None },
                0x1 if stream_id == 1 => {
                    return Answer {
                        status: h2_status(&payload).unwrap_or(999),
                        body: b"(h2 headers)".to_vec(),
                        closed: None,
                    };
                }
                0x4 if head[4] & 0x1 == 0 => {
                    // Acknowledge the server's SETTINGS.
                    let _ = stream.write_all(&h2_frame(0x4, 0x1, 0, &[])).await;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(STEP, read).await.map_err(|_| "no answer: the proxy hangs".to_owned())
}

/// `:status` from the first field of a response header block (static-table index or a
/// literal with indexed name 8, plain or Huffman-coded digits).
fn h2_status(block: &[u8]) -> Option<u16> {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let first = *block.first()?;
    if (0x88..=0x8e).contains(&first) {
        return Some(STATIC[usize::from(first - 0x88)]);
    }
    if first & 0x0f != 8 {
        return None;
    }
    let len = usize::from(block.get(1)? & 0x7f);
    let value = block.get(2..2 + len)?;
    if block[1] & 0x80 == 0 {
        return std::str::from_utf8(value).ok()?.parse().ok();
    }
    // Huffman (RFC 7541 Appendix B): '0'-'2' are 5 bits, '3'-'9' 6 bits.
    let bits: Vec<u8> = value.iter().flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1)).collect();
    let (mut digits, mut at) = (String::new(), 0);
    while digits.len() < 3 {
        let take = |n: usize| bits.get(at..at + n).map(|b| b.iter().fold(0u8, |acc, bit| acc << 1 | bit));
        match take(5)? {
            c @ 0..=2 => {
                digits.push(char::from(b'0' + c));
                at += 5;
            }
            _ => {
                let c = take(6)?;
                (0x19..=0x1f).contains(&c).then_some(())?;
                digits.push(char::from(b'3' + (c - 0x19)));
                at += 6;
            }
        }
    }
    digits.parse().ok()
}
