//! `sse::EventSplitter`, `event_data` and `replace_data`.
//!
//! The input is an SSE stream plus fuzzer-chosen cut points (see `SseInput`).
//! - nothing is lost or reordered: the events yielded, then the remainder, concatenate
//!   to the stream, however it was cut;
//! - the events are the WHATWG events of the stream (an independent splitter over the
//!   whole stream agrees, so cutting never changes them), and `TooLarge` is reported iff
//!   more than `max_event` bytes are pending without a complete event;
//! - `event_data` never panics and reads what the WHATWG rules read;
//! - `replace_data` never panics, keeps every non-data line in order, and
//!   `event_data(replace_data(ev, d)) == Some(d)` for any `d` without `\r` when `ev` has a
//!   data line (`None` when it has none: there is no data line to replace).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::mcp::sse::{EventSplitter, SseError, event_data, replace_data};
use mcp_pep_fuzz::{SseInput, data_from, has_data_line, kept_lines, reference_event_data, reference_split};

fn check_data(event: &[u8], new_data: &str) {
    assert_eq!(event_data(event), reference_event_data(event), "event_data misreads {event:?}");
    let replaced = replace_data(event, new_data);
    let expected = has_data_line(event).then(|| new_data.to_owned());
    assert_eq!(event_data(&replaced), expected, "replace_data({event:?}, {new_data:?}) = {replaced:?}");
    assert_eq!(kept_lines(&replaced), kept_lines(event), "replace_data lost or moved a non-data line");
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = SseInput::decode(data) else { return };
    let stream = input.stream;

    let mut splitter = EventSplitter::new(input.max_event);
    let mut events = Vec::new();
    let (mut pushed, mut yielded) = (0usize, 0usize);
    for chunk in input.chunks() {
        splitter.push(chunk);
        pushed += chunk.len();
        loop {
            match splitter.next_event() {
                Ok(Some(event)) => {
                    yielded += event.len();
                    events.push(event);
                }
                Ok(None) => {
                    assert!(pushed - yielded <= input.max_event, "{} bytes pending, no TooLarge", pushed - yielded);
                    break;
                }
                Err(SseError::TooLarge(limit)) => {
                    assert_eq!(limit, input.max_event);
                    assert!(pushed - yielded > input.max_event, "TooLarge with {} bytes pending", pushed - yielded);
                    break;
                }
            }
        }
    }
    let remainder = splitter.take_remainder();

    // Nothing lost, nothing reordered.
    let mut joined: Vec<u8> = events.iter().flat_map(|e| e.iter().copied()).collect();
    joined.extend_from_slice(&remainder);
    assert_eq!(joined, stream, "events + remainder differ from the stream");

    // The events are the stream's events, wherever it was cut.
    let (ref_events, ref_rest) = reference_split(stream);
    let got: Vec<&[u8]> = events.iter().map(|e| &e[..]).collect();
    assert_eq!(got, ref_events, "events differ from the reference split");
    assert_eq!(&remainder[..], ref_rest);

    // Data reading and rewriting, on the events, the remainder and the whole stream.
    for (i, event) in events.iter().enumerate() {
        let other = events.get(i + 1).map_or(&remainder[..], |e| &e[..]);
        check_data(event, &data_from(other));
        check_data(event, &event_data(event).unwrap_or_default().replace('\r', ""));
    }
    check_data(&remainder, &data_from(input.chunk_lens));
    check_data(stream, "");
    check_data(stream, "a\n\nb\n");
});
