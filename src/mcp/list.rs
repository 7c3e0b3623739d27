//! Filtering `*/list` results item by item, keeping every other byte of the message.
//!
//! The items array is located with `serde_json::RawValue` (slices of the original text),
//! and denied items are spliced out; `nextCursor`, `_meta`, the items that stay and all
//! formatting are untouched. The message is parsed strictly first (no duplicate keys),
//! so the client reads the same items we decided on.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::context::JsonRpcId;
use crate::strict_json::{self, StrictJsonError};

/// Which list a request asks for, and how its items are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub fn of(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            "resources/templates/list" => Some(ListKind::ResourceTemplates),
            _ => None,
        }
    }

    /// The member of `result` that holds the items.
    pub fn items_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The method an item is used with: what the caller would need to be allowed.
    pub fn call_method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/call",
            ListKind::Prompts => "prompts/get",
            ListKind::Resources | ListKind::ResourceTemplates => "resources/read",
        }
    }

    /// The member of an item that names it.
    fn name_key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("list response is not strict JSON: {0}")]
    Json(#[from] StrictJsonError),
    #[error("list result has no {0} array")]
    NoItems(&'static str),
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
}

/// A list request whose answer is to be filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTarget {
    pub id: JsonRpcId,
    pub kind: ListKind,
}

/// Filters a payload: one JSON-RPC message, or a batch answer (an array of messages,
/// 2025-03-26). `None` when it answers none of `targets` (another message on the same
/// stream, or an error answer): those pass unchanged. `Some(same text)` when every item
/// stays.
pub fn filter_payload(
    text: &str,
    targets: &[ListTarget],
    mut keep: impl FnMut(&ListTarget, &str) -> bool,
) -> Result<Option<String>, ListError> {
    filter_items(text, targets, |target, name, _| keep(target, name))
}

/// [`filter_payload`], with each item also handed to `keep` whole (parsed), for what
/// the caller learns from it (a tool's mirrored headers).
pub fn filter_items(
    text: &str,
    targets: &[ListTarget],
    mut keep: impl FnMut(&ListTarget, &str, &serde_json::Value) -> bool,
) -> Result<Option<String>, ListError> {
    // An SSE priming event's empty data is nobody's answer.
    if text.trim().is_empty() {
        return Ok(None);
    }
    // Strictness first: what we splice must be what every reader sees. Anything else that
    // is not strict JSON is refused: lenient readers (`NaN`, duplicate keys) could read a
    // list in it that we did not filter.
    strict_json::parse(text.as_bytes(), 128)?;
    if !text.trim_start().starts_with('[') {
        return filter_one(text, targets, &mut keep);
    }
    let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| ListError::NoItems("batch"))?;
    let mut out: Option<String> = None;
    // Splice from the last element back, so earlier offsets stay valid.
    for element in elements.iter().rev() {
        let Some(filtered) = filter_one(element.get(), targets, &mut keep)? else { continue };
        let buf = out.get_or_insert_with(|| text.to_owned());
        let start = offset_in(text, element.get());
        buf.replace_range(start..start + element.get().len(), &filtered);
    }
    Ok(out)
}

/// [`filter_payload`] for one list request.
pub fn filter_message(
    message: &str,
    id: &JsonRpcId,
    kind: ListKind,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<Option<String>, ListError> {
    filter_payload(message, &[ListTarget { id: id.clone(), kind }], |_, name| keep(name))
}

/// Where `part`, a slice of `whole`, starts in it.
fn offset_in(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

fn filter_one(
    message: &str,
    targets: &[ListTarget],
    keep: &mut impl FnMut(&ListTarget, &str, &serde_json::Value) -> bool,
) -> Result<Option<String>, ListError> {
    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(message) else { return Ok(None) };
    let (Some(raw_id), Some(result)) = (envelope.id, envelope.result) else { return Ok(None) };
    let exact = targets.iter().find(|t| same_id(raw_id.get(), &t.id));
    let Ok(members) = serde_json::from_str::<ResultMembers<'_>>(result.get()) else {
        return match exact {
            Some(target) => Err(ListError::NoItems(target.kind.items_key())),
            None => Ok(None),
        };
    };
    let members = members.0;
    // Clients match ids loosely (the TypeScript SDK by `Number(id)`: "1", 1.0 and 1e0 all
    // answer request 1), so a list result under any other id is filtered too.
    let has = |t: &&ListTarget| members.iter().any(|(k, _)| k == t.kind.items_key());
    let Some(target) = exact.or_else(|| targets.iter().find(has)) else { return Ok(None) };
    let key = target.kind.items_key();
    let items_raw = members.iter().find(|(k, _)| k == key).map(|(_, v)| *v).ok_or(ListError::NoItems(key))?;
    let items: Vec<&RawValue> = serde_json::from_str(items_raw.get()).map_err(|_| ListError::NoItems(key))?;
    let kept: Vec<&str> = items
        .iter()
        .map(|item| item.get())
        .filter(|item| item_name(item, target.kind).is_some_and(|(name, value)| keep(target, &name, &value)))
        .collect();
    if kept.len() == items.len() {
        return Ok(Some(message.to_owned()));
    }
    // The items array borrows from `message`: splice the kept items in its place.
    let start = offset_in(message, items_raw.get());
    let end = start + items_raw.get().len();
    let mut out = String::with_capacity(message.len());
    out.push_str(&message[..start]);
    out.push('[');
    out.push_str(&kept.join(","));
    out.push(']');
    out.push_str(&message[end..]);
    Ok(Some(out))
}

/// The result object's members in order, values kept raw.
struct ResultMembers<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for ResultMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = ResultMembers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    members.push((k, v));
                }
                Ok(ResultMembers(members))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The item's name (tool/prompt name, resource URI or URI template). An item without
/// one cannot be decided, so it is dropped.
fn item_name(item: &str, kind: ListKind) -> Option<(String, serde_json::Value)> {
    let value: serde_json::Value = serde_json::from_str(item).ok()?;
    let name = value.get(kind.name_key())?.as_str()?.to_owned();
    Some((name, value))
}

fn same_id(raw: &str, id: &JsonRpcId) -> bool {
    match (serde_json::from_str::<serde_json::Value>(raw), id) {
        (Ok(serde_json::Value::Number(n)), JsonRpcId::Number(want)) => n.as_i64() == Some(*want),
        (Ok(serde_json::Value::String(s)), JsonRpcId::String(want)) => *s == **want,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep_ab(name: &str) -> bool {
        name == "a" || name == "b"
    }

    #[test]
    fn splices_out_denied_items_and_keeps_every_other_byte() {
        let msg = r#"{"jsonrpc":"2.0", "id":3,"result":{"tools":[{"name":"a","x":1}, {"name":"secret"},{"name":"b"}],"nextCursor":"c2" ,"_meta":{"k":[1,2]}}}"#;
        let out = filter_message(msg, &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap().unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0", "id":3,"result":{"tools":[{"name":"a","x":1},{"name":"b"}],"nextCursor":"c2" ,"_meta":{"k":[1,2]}}}"#
        );
    }

    #[test]
    fn unchanged_when_everything_is_allowed() {
        let msg = r#"{"jsonrpc":"2.0","id":"x","result":{"prompts":[ {"name":"a"} ]}}"#;
        let out = filter_message(msg, &JsonRpcId::String("x".into()), ListKind::Prompts, keep_ab).unwrap();
        assert_eq!(out.as_deref(), Some(msg));
    }

    #[test]
    fn other_messages_pass() {
        let error = r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"m"}}"#;
        assert_eq!(filter_message(error, &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap(), None);
        assert_eq!(filter_message("", &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap(), None);
        assert_eq!(filter_message(" \n", &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap(), None);
        let notification = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#;
        assert_eq!(filter_message(notification, &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap(), None);
        // A result without the list's items is not a list answer, whatever its id.
        let other_result = r#"{"jsonrpc":"2.0","id":4,"result":{"content":[{"name":"secret"}]}}"#;
        assert_eq!(filter_message(other_result, &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap(), None);
    }

    #[test]
    fn batch_answers_are_filtered_element_by_element() {
        let batch = r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"x"}]}}, {"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"y"},{"name":"b"}]}}]"#;
        let targets = [
            ListTarget { id: JsonRpcId::Number(1), kind: ListKind::Tools },
            ListTarget { id: JsonRpcId::Number(3), kind: ListKind::Prompts },
        ];
        let out = filter_payload(batch, &targets, |_, name| keep_ab(name)).unwrap().unwrap();
        assert_eq!(
            out,
            r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}, {"jsonrpc":"2.0","id":2,"result":{}},{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"b"}]}}]"#
        );
        let unrelated = r#"[{"jsonrpc":"2.0","id":9,"result":{"other":[{"name":"x"}]}}]"#;
        assert_eq!(filter_payload(unrelated, &targets, |_, name| keep_ab(name)).unwrap(), None);
    }

    #[test]
    fn list_results_under_loosely_equal_or_other_ids_are_filtered() {
        // The TypeScript SDK reads "3", 3.0 and 3e0 as the answer to request 3.
        for id in [r#""3""#, "3.0", "3e0", "4"] {
            let msg =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"secret"}},{{"name":"a"}}]}}}}"#);
            let out = filter_message(&msg, &JsonRpcId::Number(3), ListKind::Tools, keep_ab).unwrap();
            assert_eq!(out.as_deref(), Some(msg.replace(r#"{"name":"secret"},"#, "").as_str()), "id {id}");
        }
    }

    #[test]
    fn resources_and_templates_are_named_by_uri() {
        let msg =
            r#"{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"a"},{"uriTemplate":"z"}]}}"#;
        let out = filter_message(msg, &JsonRpcId::Number(1), ListKind::ResourceTemplates, keep_ab).unwrap().unwrap();
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"a"}]}}"#);
    }

    #[test]
    fn unnamed_items_are_dropped() {
        let msg = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"no name"},{"name":7},{"name":"a"}]}}"#;
        let out = filter_message(msg, &JsonRpcId::Number(1), ListKind::Tools, |_| true).unwrap().unwrap();
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#);
    }

    #[test]
    fn refuses_what_two_readers_could_read_differently() {
        let dup_items = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"tools":[{"name":"secret"}]}}"#;
        assert!(matches!(
            filter_message(dup_items, &JsonRpcId::Number(1), ListKind::Tools, keep_ab),
            Err(ListError::Json(StrictJsonError::DuplicateKey(_)))
        ));
        let dup_name = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"secret"}]}}"#;
        assert!(filter_message(dup_name, &JsonRpcId::Number(1), ListKind::Tools, keep_ab).is_err());
        // Python's json reads NaN: a list hidden in lenient JSON is refused, not passed.
        let lenient = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret","x":NaN}]}}"#;
        assert!(matches!(
            filter_message(lenient, &JsonRpcId::Number(1), ListKind::Tools, keep_ab),
            Err(ListError::Json(StrictJsonError::Syntax(_)))
        ));
        let no_items = r#"{"jsonrpc":"2.0","id":1,"result":{"tool":[]}}"#;
        assert_eq!(
            filter_message(no_items, &JsonRpcId::Number(1), ListKind::Tools, keep_ab),
            Err(ListError::NoItems("tools"))
        );
    }
}
