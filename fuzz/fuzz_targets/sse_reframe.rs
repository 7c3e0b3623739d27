//! `replace_data` keeps the event framing: for an event as `EventSplitter` yields it (one
//! complete event, ending in an empty line), `replace_data(event, d)` must again be
//! exactly one complete event. Otherwise the client's SSE parser merges it with the next
//! event of the stream (the filtered list answer and whatever follows become one event).
//! Only events with a data line are rewritten by the proxy (`policy/filter.rs` replaces
//! an event when `event_data` is `Some`), so only those are checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_pep::mcp::sse::{EventSplitter, replace_data};
use mcp_pep_fuzz::{SseInput, data_from, has_data_line, reference_split};

fuzz_target!(|data: &[u8]| {
    let Some(input) = SseInput::decode(data) else { return };
    let mut splitter = EventSplitter::new(input.max_event);
    let mut events = Vec::new();
    for chunk in input.chunks() {
        splitter.push(chunk);
        while let Ok(Some(event)) = splitter.next_event() {
            events.push(event);
        }
    }
    for (i, event) in events.iter().enumerate() {
        if !has_data_line(event) {
            continue;
        }
        let new_data = data_from(events.get(i + 1).map_or(input.chunk_lens, |e| &e[..]));
        let out = replace_data(event, &new_data);
        let (framed, rest) = reference_split(&out);
        assert!(
            framed.len() == 1 && rest.is_empty(),
            "replace_data({event:?}, {new_data:?}) = {out:?} is {} complete events + {rest:?}",
            framed.len()
        );
    }
});
