//! RFC 6902 JSON Patch between two JSON documents: what the webhook answers instead of
//! a whole object (an apiserver applies it to the object it has, so fields this binary
//! does not know survive).

use serde_json::{Value, json};

/// The operations that turn `from` into `to`. Objects are compared member by member;
/// an array whose length changed is replaced whole (its elements may have moved).
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    walk(from, to, &mut String::new(), &mut ops);
    ops
}

/// RFC 6901: `~` and `/` escaped in a reference token.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(from: &Value, to: &Value, path: &mut String, ops: &mut Vec<Value>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, old) in a {
                let len = path.len();
                path.push('/');
                path.push_str(&token(key));
                match b.get(key) {
                    None => ops.push(json!({"op": "remove", "path": path.as_str()})),
                    Some(new) => walk(old, new, path, ops),
                }
                path.truncate(len);
            }
            for (key, new) in b {
                if !a.contains_key(key) {
                    ops.push(json!({"op": "add", "path": format!("{path}/{}", token(key)), "value": new}));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (old, new)) in a.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                walk(old, new, path, ops);
                path.truncate(len);
            }
        }
        _ if from == to => {}
        _ => ops.push(json!({"op": "replace", "path": path.as_str(), "value": to})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_changes_become_add_remove_replace() {
        let from = json!({"a": 1, "b": {"c": [1, 2], "d/e": "x"}, "gone": true});
        let to = json!({"a": 2, "b": {"c": [1, 2, 3], "d/e": "x", "new~": {}}});
        assert_eq!(
            diff(&from, &to),
            [
                json!({"op": "replace", "path": "/a", "value": 2}),
                json!({"op": "replace", "path": "/b/c", "value": [1, 2, 3]}),
                json!({"op": "add", "path": "/b/new~0", "value": {}}),
                json!({"op": "remove", "path": "/gone"}),
            ]
        );
        assert!(diff(&from, &from).is_empty());
    }
}
