//! Server-sent events, as far as a filtering proxy needs them: split a byte stream into
//! whole events (WHATWG HTML §9.2.6 line rules: `\r\n`, `\n` or `\r`; an empty line ends
//! an event), read an event's data, and rebuild an event with new data.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
}

/// A byte order mark opens a stream (WHATWG: skipped once, at the start of the stream).
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Accumulates chunks and yields complete events (with their terminating empty line).
pub struct EventSplitter {
    buf: BytesMut,
    /// Where to resume scanning for the end of the current event.
    scanned: usize,
    max_event: usize,
}

impl EventSplitter {
    pub fn new(max_event: usize) -> Self {
        EventSplitter { buf: BytesMut::new(), scanned: 0, max_event }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Result<Option<Bytes>, SseError> {
        let mut line_start = self.scanned;
        let mut i = self.scanned;
        while i < self.buf.len() {
            let terminator = match self.buf[i] {
                b'\n' => 1,
                // A lone `\r` at the end may be the first half of `\r\n`: wait for more.
                b'\r' if i + 1 == self.buf.len() => break,
                b'\r' if self.buf[i + 1] == b'\n' => 2,
                b'\r' => 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let empty_line = i == line_start;
            i += terminator;
            line_start = i;
            if empty_line {
                self.scanned = 0;
                return Ok(Some(self.buf.split_to(i).freeze()));
            }
        }
        self.scanned = line_start;
        if self.buf.len() > self.max_event {
            return Err(SseError::TooLarge(self.max_event));
        }
        Ok(None)
    }

    /// What is left when the stream ends (an unterminated last event, passed on as is).
    pub fn take_remainder(&mut self) -> Bytes {
        self.scanned = 0;
        self.buf.split().freeze()
    }
}

fn lines(raw: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\n' || *b == b'\r').unwrap_or(rest.len());
        let term = match rest.get(end) {
            Some(b'\r') if rest.get(end + 1) == Some(&b'\n') => 2,
            Some(_) => 1,
            None => 0,
        };
        let (line, tail) = rest.split_at(end);
        let (terminator, tail) = tail.split_at(term);
        rest = tail;
        Some((line, terminator))
    })
}

/// The field value of a `data` line, or `None` for any other line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    if line == b"data" {
        return Some(b"");
    }
    let value = line.strip_prefix(b"data:")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// The event's data: its data lines joined with `\n`; `None` without a data line.
/// Invalid UTF-8 reads as U+FFFD, as browsers' and the SDKs' SSE decoders read it: what
/// we decide on must be what the client will read.
pub fn event_data(raw: &[u8]) -> Option<String> {
    let mut data: Option<Vec<u8>> = None;
    for (line, _) in lines(raw) {
        if let Some(value) = data_value(line) {
            match &mut data {
                None => data = Some(value.to_vec()),
                Some(buf) => {
                    buf.push(b'\n');
                    buf.extend_from_slice(value);
                }
            }
        }
    }
    data.map(|d| String::from_utf8_lossy(&d).into_owned())
}

/// The same event with its data replaced: `id:`, `event:`, `retry:` and comments stay
/// in place, the data lines become one `data:` line per line of `data`; every line ends
/// in `\n`.
pub fn replace_data(raw: &[u8], data: &str) -> Bytes {
    let mut out = Vec::with_capacity(raw.len());
    let mut written = false;
    for (line, _) in lines(raw) {
        if line.is_empty() {
            continue;
        }
        if data_value(line).is_some() {
            if !written {
                for part in data.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(part.as_bytes());
                    out.push(b'\n');
                }
                written = true;
            }
            continue;
        }
        // One line ending throughout: a kept `\r` followed by our `\n` would read as one
        // `\r\n` and the event would lose its closing empty line.
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Bytes> {
        let mut s = EventSplitter::new(1 << 20);
        let mut events = Vec::new();
        for chunk in chunks {
            s.push(chunk);
            while let Some(e) = s.next_event().unwrap() {
                events.push(e);
            }
        }
        events
    }

    #[test]
    fn splits_on_every_line_ending_and_across_chunks() {
        let events = split_all(&[b"id: 1\ndata: a\n\nid: 2\r\ndata: b\r", b"\n\r\n", b"data: c\r\rdata: d"]);
        assert_eq!(events, [&b"id: 1\ndata: a\n\n"[..], b"id: 2\r\ndata: b\r\n\r\n", b"data: c\r\r"]);
    }

    #[test]
    fn reads_multi_line_data() {
        assert_eq!(event_data(b"event: message\ndata: {\"a\":\ndata:1}\n\n").as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(event_data(b": comment\nretry: 10\n\n"), None);
        assert_eq!(event_data(b"data\n\n").as_deref(), Some(""));
        assert_eq!(event_data(b"data\ndata: x\n\n").as_deref(), Some("\nx"));
    }

    #[test]
    fn replaces_data_keeping_other_fields() {
        let out = replace_data(b"id: 7\r\nevent: message\r\ndata: old\r\ndata: more\r\nretry: 5\r\n\r\n", "new");
        assert_eq!(&out[..], b"id: 7\nevent: message\ndata: new\nretry: 5\n\n");
        // CR-only events stay one event (the fuzzer's sse_reframe find).
        let out = replace_data(b"data: old\rid: 7\r\r", "new");
        assert_eq!(&out[..], b"data: new\nid: 7\n\n");
    }

    #[test]
    fn bounds_event_size() {
        let mut s = EventSplitter::new(8);
        s.push(b"data: 0123456789");
        assert_eq!(s.next_event(), Err(SseError::TooLarge(8)));
    }
}
