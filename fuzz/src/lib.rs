//! Helpers shared by the fuzz targets: how a target's input is decoded, and small
//! reference models of the SSE rules written independently of `mcp_pep::mcp::sse`.

/// An SSE fuzz input: how to cut the stream into chunks, the event size limit, the stream.
///
/// Layout: byte 0 = `hhhh nnnn`; `nnnn` chunk lengths follow (one byte each, used
/// cyclically; 0 means an empty push); `hhhh` picks the splitter's `max_event`
/// (0 = effectively unbounded, else `hhhh * 8` bytes). Everything after is the stream.
pub struct SseInput<'a> {
    pub chunk_lens: &'a [u8],
    pub max_event: usize,
    pub stream: &'a [u8],
}

/// `max_event` when the input asks for no limit: larger than any fuzz input.
pub const UNBOUNDED: usize = 1 << 24;

impl<'a> SseInput<'a> {
    pub fn decode(data: &'a [u8]) -> Option<Self> {
        let (&control, rest) = data.split_first()?;
        let n = usize::from(control & 0x0f);
        if rest.len() < n {
            return None;
        }
        let (chunk_lens, stream) = rest.split_at(n);
        let h = usize::from(control >> 4);
        let max_event = if h == 0 { UNBOUNDED } else { h * 8 };
        Some(SseInput { chunk_lens, max_event, stream })
    }

    /// The stream cut as the input says. Concatenated, the chunks are the stream.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        if self.chunk_lens.iter().all(|&l| l == 0) {
            return vec![self.stream];
        }
        let mut out = Vec::new();
        let mut rest = self.stream;
        let mut i = 0;
        while !rest.is_empty() {
            let len = usize::from(self.chunk_lens[i % self.chunk_lens.len()]).min(rest.len());
            let (chunk, tail) = rest.split_at(len);
            out.push(chunk);
            rest = tail;
            i += 1;
        }
        out
    }
}

/// Splits a complete stream into events the WHATWG way (a line ends at `\r\n`, `\n` or
/// `\r`; an empty line ends an event). A `\r` that is the very last byte is undecided (it
/// may be the first half of `\r\n`), so it ends nothing. Returns the events (each with
/// its terminating empty line) and the unterminated rest.
pub fn reference_split(s: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut events = Vec::new();
    let mut event_start = 0;
    let mut pos = 0;
    while let Some(rel) = s[pos..].iter().position(|&b| b == b'\n' || b == b'\r') {
        let at = pos + rel;
        let term = match (s[at], s.get(at + 1)) {
            (b'\n', _) => 1,
            (_, None) => break,
            (_, Some(b'\n')) => 2,
            (_, Some(_)) => 1,
        };
        let empty_line = at == pos;
        pos = at + term;
        if empty_line {
            events.push(&s[event_start..pos]);
            event_start = pos;
        }
    }
    (events, &s[event_start..])
}

/// The lines of one event or stream fragment (terminators dropped; a `\r` at the end
/// counts as a terminator here, since the text is taken as complete).
pub fn reference_lines(s: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < s.len() {
        match s[pos..].iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                lines.push(&s[pos..]);
                break;
            }
            Some(rel) => {
                let at = pos + rel;
                lines.push(&s[pos..at]);
                pos = at + if s[at] == b'\r' && s.get(at + 1) == Some(&b'\n') { 2 } else { 1 };
            }
        }
    }
    lines
}

/// The value of a `data` field line (WHATWG: field name `data`, one optional space after
/// the colon), or `None` for any other line.
pub fn reference_data_value(line: &[u8]) -> Option<&[u8]> {
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(0) => return None, // a comment
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    if name != b"data" {
        return None;
    }
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

/// An event's data: its data values joined with `\n`, `None` without a data line;
/// invalid UTF-8 decoded to U+FFFD, as clients' SSE decoders read it.
pub fn reference_event_data(event: &[u8]) -> Option<String> {
    let values: Vec<&[u8]> = reference_lines(event).into_iter().filter_map(reference_data_value).collect();
    if values.is_empty() {
        return None;
    }
    Some(String::from_utf8_lossy(&values.join(&b'\n')).into_owned())
}

pub fn has_data_line(event: &[u8]) -> bool {
    reference_lines(event).into_iter().any(|l| reference_data_value(l).is_some())
}

/// The lines that `replace_data` must keep: every non-empty line that is not a data line.
pub fn kept_lines(event: &[u8]) -> Vec<&[u8]> {
    reference_lines(event).into_iter().filter(|l| !l.is_empty() && reference_data_value(l).is_none()).collect()
}

/// New data derived from fuzz bytes: valid UTF-8, no `\r` (the documented precondition
/// of the `replace_data` round trip), bounded in size.
pub fn data_from(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).replace('\r', "")
}
