//! `list::filter_message` / `filter_payload`: byte-preserving removal of list items.
//!
//! Request ids and list kinds are taken from the message itself (so that the fuzzer
//! reaches the splice). Checked directly, for a single message:
//! - never panics, whatever `keep` answers;
//! - a different id is never answered (`Ok(None)` or the same refusal);
//! - keep-everything: `Some(out)` is the input itself when every item is named (an item
//!   without a name cannot be decided and is dropped by design);
//! - keep-nothing: `Some(out)` is strict JSON whose items array is `[]` and otherwise the
//!   input's value, and `out` is the input with only that array's text replaced by `[]`;
//! - `keep` is asked once per named item, in order, with the item's name.
//!
//! And for any payload (single message or 2025-03-26 batch answer), with keep-all,
//! keep-nothing and a mixed `keep`: the result is exactly that of a small model written
//! here (same refusals, same `keep` calls, same output bytes).
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mcp_pep::context::JsonRpcId;
use mcp_pep::mcp::list::{ListError, ListKind, ListTarget, filter_message, filter_payload};
use mcp_pep::mcp::strict_json;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

const KINDS: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates];

fn name_key(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Tools | ListKind::Prompts => "name",
        ListKind::Resources => "uri",
        ListKind::ResourceTemplates => "uriTemplate",
    }
}

fn item_name(item: &Value, kind: ListKind) -> Option<&str> {
    item.get(name_key(kind))?.as_str()
}

fn rpc_id(v: &Value) -> Option<JsonRpcId> {
    match v {
        Value::Number(n) => n.as_i64().map(JsonRpcId::Number),
        Value::String(s) => Some(JsonRpcId::String(s.as_str().into())),
        _ => None,
    }
}

fn other_id(id: &JsonRpcId) -> JsonRpcId {
    match id {
        JsonRpcId::Number(n) => JsonRpcId::String(n.to_string().into()),
        JsonRpcId::String(_) => JsonRpcId::Number(i64::MIN),
    }
}

/// The list requests a message could answer: every `{id, result: {<items key>: ..}}`.
fn targets_in(value: &Value) -> Vec<ListTarget> {
    let messages: Vec<&Value> = match value {
        Value::Array(elements) => elements.iter().collect(),
        single => vec![single],
    };
    let mut targets = Vec::new();
    for m in messages {
        let (Some(id), Some(result)) = (m.get("id").and_then(rpc_id), m.get("result")) else { continue };
        if let Some(kind) = KINDS.into_iter().find(|k| result.get(k.items_key()).is_some()) {
            targets.push(ListTarget { id, kind });
        }
    }
    targets
}

// ---------------------------------------------------------------------------------------
// The model.

type Keep<'a> = dyn FnMut(&ListTarget, &str) -> bool + 'a;

fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

fn same_id(raw: &Value, id: &JsonRpcId) -> bool {
    match (raw, id) {
        (Value::Number(n), JsonRpcId::Number(want)) => n.as_i64() == Some(*want),
        (Value::String(s), JsonRpcId::String(want)) => s.as_str() == &**want,
        _ => false,
    }
}

fn model(text: &str, targets: &[ListTarget], keep: &mut Keep<'_>) -> Result<Option<String>, ListError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    strict_json::parse(text.as_bytes(), 128)?;
    if !text.trim_start().starts_with('[') {
        return model_one(text, targets, keep);
    }
    let elements: Vec<&RawValue> = serde_json::from_str(text).expect("strict JSON array");
    let mut out: Option<String> = None;
    for element in elements.iter().rev() {
        let Some(filtered) = model_one(element.get(), targets, keep)? else { continue };
        let buf = out.get_or_insert_with(|| text.to_owned());
        let start = offset(text, element.get());
        buf.replace_range(start..start + element.get().len(), &filtered);
    }
    Ok(out)
}

/// The raw `id` and `result` of one message. The proxy reads the envelope with a serde
/// derive, which also accepts a 2-element array `[id, result]`: modelled, not endorsed.
fn envelope(msg: &str) -> Option<(&RawValue, &RawValue)> {
    let (id, result) = match serde_json::from_str::<Value>(msg).ok()? {
        Value::Object(_) => {
            let members: BTreeMap<String, &RawValue> = serde_json::from_str(msg).ok()?;
            (*members.get("id")?, *members.get("result")?)
        }
        Value::Array(a) if a.len() == 2 => {
            let pair: Vec<&RawValue> = serde_json::from_str(msg).ok()?;
            (pair[0], pair[1])
        }
        _ => return None,
    };
    (id.get() != "null" && result.get() != "null").then_some((id, result))
}

fn model_one(msg: &str, targets: &[ListTarget], keep: &mut Keep<'_>) -> Result<Option<String>, ListError> {
    let Some((raw_id, result)) = envelope(msg) else { return Ok(None) };
    let id_value: Value = serde_json::from_str(raw_id.get()).unwrap();
    let exact = targets.iter().find(|t| same_id(&id_value, &t.id));
    let members: Option<BTreeMap<String, &RawValue>> = serde_json::from_str(result.get()).ok();
    // Clients match ids loosely, so a list result under another id is filtered too, by the
    // first target whose items key it has.
    let loose = || targets.iter().find(|t| members.as_ref().is_some_and(|m| m.contains_key(t.kind.items_key())));
    let Some(target) = exact.or_else(loose) else { return Ok(None) };
    let key = target.kind.items_key();
    let no_items = ListError::NoItems(key);
    let members = members.clone().ok_or(no_items.clone())?;
    let array = *members.get(key).ok_or(no_items.clone())?;
    let items: Vec<&RawValue> = serde_json::from_str(array.get()).map_err(|_| no_items)?;
    let mut kept = Vec::new();
    for item in &items {
        let value: Value = serde_json::from_str(item.get()).unwrap();
        if item_name(&value, target.kind).is_some_and(|name| keep(target, name)) {
            kept.push(item.get());
        }
    }
    if kept.len() == items.len() {
        return Ok(Some(msg.to_owned()));
    }
    let start = offset(msg, array.get());
    let end = start + array.get().len();
    Ok(Some(format!("{}[{}]{}", &msg[..start], kept.join(","), &msg[end..])))
}

/// The real function and the model agree on result and on every `keep` call.
fn differential(text: &str, targets: &[ListTarget], decide: fn(&str) -> bool) {
    let mut real_calls = Vec::new();
    let real = filter_payload(text, targets, |t, name| {
        real_calls.push((t.clone(), name.to_owned()));
        decide(name)
    });
    let mut model_calls = Vec::new();
    let expected = model(text, targets, &mut |t: &ListTarget, name: &str| {
        model_calls.push((t.clone(), name.to_owned()));
        decide(name)
    });
    assert_eq!(real, expected, "filter_payload differs from the model on {text:?} for {targets:?}");
    assert_eq!(real_calls, model_calls, "keep was asked differently than the model asks");
    if let Ok(Some(out)) = &real {
        assert!(strict_json::parse(out.as_bytes(), 128).is_ok(), "filtered output is not strict JSON: {out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Direct checks on one message.

/// `out` must be `msg` with one array (whose value is `original`) replaced by `kept`.
fn check_splice(msg: &str, out: &str, original: &Value, kept: &[Value]) {
    let common = msg.bytes().zip(out.bytes()).take_while(|(a, b)| a == b).count();
    for start in (0..=common.min(msg.len() - 1)).rev() {
        if msg.as_bytes()[start] != b'[' {
            continue;
        }
        let mut de = serde_json::Deserializer::from_str(&msg[start..]);
        let Ok(array) = <&RawValue>::deserialize(&mut de) else { continue };
        if serde_json::from_str::<Value>(array.get()).ok().as_ref() != Some(original) {
            continue;
        }
        let end = start + array.get().len();
        let Some(middle) = out.strip_prefix(&msg[..start]).and_then(|o| o.strip_suffix(&msg[end..])) else {
            continue;
        };
        if serde_json::from_str::<Vec<Value>>(middle).ok().as_deref() == Some(kept) {
            return;
        }
    }
    panic!("output is not the input with its items array spliced:\n in: {msg:?}\nout: {out:?}");
}

fn with_items(v: &Value, kind: ListKind, items: Vec<Value>) -> Value {
    let mut v = v.clone();
    v["result"][kind.items_key()] = Value::Array(items);
    v
}

fn check_single(msg: &str, value: &Value, id: JsonRpcId, kind: ListKind) {
    let mut asked = Vec::new();
    let all = filter_message(msg, &id, kind, |name| {
        asked.push(name.to_owned());
        true
    });
    let none = filter_message(msg, &id, kind, |_| false);
    let other = filter_message(msg, &other_id(&id), kind, |_| true);

    match (&all, &none) {
        (Err(a), Err(b)) => assert_eq!(a, b, "the refusal depends on keep"),
        (Ok(a), Ok(b)) => assert_eq!(a.is_some(), b.is_some(), "whether it answers depends on keep"),
        _ => panic!("keep decided between refusal and answer: {all:?} / {none:?}"),
    }
    // A list result is filtered whatever its id (clients match ids loosely): under another
    // id the answer is the same, except that a result without items is then nobody's.
    match (&other, &all) {
        (a, b) if a == b => {}
        (Ok(None), Err(_)) => {}
        _ => panic!("another id changed the answer: {other:?} / {all:?}"),
    }
    let (Ok(Some(out_all)), Ok(Some(out_none))) = (all, none) else {
        assert!(asked.is_empty(), "keep was asked about a message that is not answered");
        return;
    };

    let original = &value["result"][kind.items_key()];
    let array = original.as_array().expect("answered, but the items are not an array");
    let names: Vec<&str> = array.iter().filter_map(|i| item_name(i, kind)).collect();
    assert_eq!(asked, names, "keep was not asked once per named item, in order");
    let named: Vec<Value> = array.iter().filter(|i| item_name(i, kind).is_some()).cloned().collect();

    if named.len() == array.len() {
        assert_eq!(out_all, msg, "keep-everything changed the message");
    } else {
        let out_value = strict_json::parse(out_all.as_bytes(), 128).expect("keep-everything output not strict JSON");
        assert_eq!(out_value, with_items(value, kind, named.clone()), "keep-everything kept unnamed items");
        check_splice(msg, &out_all, original, &named);
    }

    if array.is_empty() {
        assert_eq!(out_none, msg);
    } else {
        let out_value = strict_json::parse(out_none.as_bytes(), 128).expect("keep-nothing output not strict JSON");
        assert_eq!(out_value, with_items(value, kind, Vec::new()), "keep-nothing left items, or changed others");
        check_splice(msg, &out_none, original, &[]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let value = serde_json::from_str::<Value>(text).ok();
    let mut targets = value.as_ref().map(targets_in).unwrap_or_default();

    // One message: the brief's properties, checked directly.
    if let Some(v @ Value::Object(_)) = &value {
        match targets.first() {
            Some(t) => check_single(text, v, t.id.clone(), t.kind),
            None => check_single(text, v, JsonRpcId::Number(1), ListKind::Tools),
        }
    }

    // Any payload, against the model; a target nothing answers rides along.
    targets.push(ListTarget { id: JsonRpcId::String("\u{0}nobody".into()), kind: ListKind::Prompts });
    differential(text, &targets, |_| true);
    differential(text, &targets, |_| false);
    differential(text, &targets, |name| name.len() % 2 == 0);
    differential(text, &[], |_| true);
});
