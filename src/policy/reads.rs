//! Which parts of the input a policy set can read, found in its syntax tree, so that a
//! decision can be reused for inputs that agree on those parts (`cache`).
//!
//! The analysis is conservative: every way Rego reaches the input starts at the `input`
//! variable, so every `input` reference is recorded as the longest *static* path it
//! names (`input.mcp.tool`, `input["mcp"]["tool"]`); a reference that goes on with a
//! computed index, is passed whole to a function, bound to a variable, imported or
//! iterated is recorded at the point where it stops being static, and counts as reading
//! everything below. A bare `input` reads everything. `object.get(input…, "k" or
//! ["k", …], d)` with literal keys reads that path. Policies that call builtins whose
//! answer is not a function of their arguments (`time.now_ns`, `http.send`, …) are not
//! cacheable at all.

use serde_json::Value;

/// Builtins whose result may differ between two calls with the same arguments.
const IMPURE_BUILTINS: &[&str] = &[
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "http.send",
    "opa.runtime",
    "net.lookup_ip_addr",
    "io.jwt.decode_verify",
    "crypto.x509.parse_and_verify_certificates",
];

/// What a policy set reads of its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputReads {
    /// Decisions depend on the input only through these paths (each covering its
    /// subtree), sorted, none a prefix of another. `[]` as a path: the whole input.
    Paths(Vec<Vec<String>>),
    /// Decisions may change between two evaluations of the same input.
    Impure(String),
}

/// Reads the syntax trees of `engine`'s policies (regorus's AST as JSON).
pub fn analyse(ast_json: &str) -> Result<InputReads, String> {
    let modules: Value = serde_json::from_str(ast_json).map_err(|e| e.to_string())?;
    let mut walk = Walk::default();
    walk.node(&modules);
    if let Some(name) = walk.impure {
        return Ok(InputReads::Impure(name));
    }
    let mut paths = walk.paths;
    paths.sort();
    paths.dedup();
    // Keep only the shortest: a path covers everything below it.
    let mut kept: Vec<Vec<String>> = Vec::new();
    for path in paths {
        if !kept.iter().any(|k| path.starts_with(k)) {
            kept.push(path);
        }
    }
    Ok(InputReads::Paths(kept))
}

#[derive(Default)]
struct Walk {
    paths: Vec<Vec<String>>,
    impure: Option<String>,
}

/// The `(inner, step)` of a reference node: `RefDot` steps by a field, `RefBrack` by an
/// index expression.
fn ref_parts(node: &Value) -> Option<(&Value, Step<'_>)> {
    if let Some(dot) = node.get("RefDot") {
        let field = dot.get("field")?.get(1)?.as_str()?;
        return Some((dot.get("refr")?, Step::Field(field)));
    }
    let brack = node.get("RefBrack")?;
    let index = brack.get("index")?;
    Some((brack.get("refr")?, string_literal(index).map_or(Step::Computed(index), Step::Field)))
}

/// The text of a string literal node (`"k"` or `` `k` ``).
fn string_literal(node: &Value) -> Option<&str> {
    ["String", "RawString"].iter().find_map(|k| node.get(*k)?.get("value")?.as_str())
}

enum Step<'a> {
    Field(&'a str),
    Computed(&'a Value),
}

fn is_input(node: &Value) -> bool {
    node.get("Var").and_then(|v| v.get("value")).and_then(Value::as_str) == Some("input")
}

/// `a.b.c` for a function reference made of a variable and fields.
fn dotted_name(node: &Value) -> Option<String> {
    if let Some(var) = node.get("Var") {
        return var.get("value")?.as_str().map(str::to_owned);
    }
    let (inner, Step::Field(field)) = ref_parts(node)? else { return None };
    Some(format!("{}.{field}", dotted_name(inner)?))
}

impl Walk {
    fn node(&mut self, node: &Value) {
        match node {
            Value::Array(items) => items.iter().for_each(|n| self.node(n)),
            Value::Object(_) if is_input(node) => self.paths.push(Vec::new()),
            Value::Object(map) => {
                if ref_parts(node).is_some() && self.reference(node) {
                    return;
                }
                if let Some(call) = node.get("Call")
                    && self.call(call)
                {
                    return;
                }
                map.values().for_each(|n| self.node(n));
            }
            _ => {}
        }
    }

    /// A reference chain rooted at `input`: records its static prefix and walks the
    /// computed indexes. Returns false for chains rooted elsewhere (walked as usual).
    fn reference(&mut self, node: &Value) -> bool {
        let mut steps = Vec::new();
        let mut current = node;
        while let Some((inner, step)) = ref_parts(current) {
            steps.push(step);
            current = inner;
        }
        if !is_input(current) {
            return false;
        }
        steps.reverse();
        let mut path = Vec::new();
        let mut computed = false;
        for step in steps {
            match step {
                Step::Field(name) if !computed => path.push(name.to_owned()),
                Step::Field(_) => {}
                Step::Computed(index) => {
                    computed = true;
                    self.node(index);
                }
            }
        }
        self.paths.push(path);
        true
    }

    /// Notes impure builtins; reads `object.get(input…, literal keys, default)` as a path.
    fn call(&mut self, call: &Value) -> bool {
        let Some(name) = call.get("fcn").and_then(dotted_name) else { return false };
        if IMPURE_BUILTINS.contains(&name.as_str()) {
            self.impure.get_or_insert(name);
            return false;
        }
        let params = call.get("params").and_then(Value::as_array);
        let (Some([object, keys, default]), "object.get") = (params.map(Vec::as_slice), name.as_str()) else {
            return false;
        };
        let mut base = Walk::default();
        base.node(object);
        let keys: Option<Vec<&str>> = match keys.get("Array") {
            Some(array) => {
                array.get("items").and_then(Value::as_array).and_then(|i| i.iter().map(string_literal).collect())
            }
            None => string_literal(keys).map(|k| vec![k]),
        };
        // Only `object.get(<one static input path>, <literal keys>, d)` narrows the read.
        let (Some(keys), [path]) = (keys, &base.paths[..]) else { return false };
        if base.impure.is_some() || !object_is_plain_ref(object) {
            return false;
        }
        let mut full = path.clone();
        full.extend(keys.iter().map(|k| (*k).to_owned()));
        self.paths.push(full);
        self.node(default);
        true
    }
}

/// `input` or a static reference chain on it (no computed index).
fn object_is_plain_ref(node: &Value) -> bool {
    let mut current = node;
    while let Some((inner, step)) = ref_parts(current) {
        if matches!(step, Step::Computed(_)) {
            return false;
        }
        current = inner;
    }
    is_input(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(rego: &str) -> InputReads {
        let mut engine = regorus::Engine::new();
        engine.add_policy("p.rego".into(), format!("package p\nimport rego.v1\n{rego}")).unwrap();
        analyse(&engine.get_ast_as_json().unwrap()).unwrap()
    }

    fn paths(rego: &str) -> Vec<String> {
        match reads(rego) {
            InputReads::Paths(paths) => paths.iter().map(|p| p.join(".")).collect(),
            InputReads::Impure(name) => panic!("impure: {name}"),
        }
    }

    #[test]
    fn static_references_are_read_exactly() {
        assert_eq!(
            paths(r#"r if { input.mcp.tool == "x"; input["identity"]["spiffe_id"] }"#),
            ["identity.spiffe_id", "mcp.tool"]
        );
        // A read inside a data index counts too.
        assert_eq!(paths("r if data.levels[input.identity.spiffe_id]"), ["identity.spiffe_id"]);
    }

    #[test]
    fn a_reference_that_stops_being_static_reads_its_whole_subtree() {
        assert_eq!(paths("r if { some k; input.mcp[k] == 1 }"), ["mcp"]);
        assert_eq!(paths("r if { x := input.mcp; x.id == 1 }"), ["mcp"]);
        assert_eq!(paths("r if { some x in input.mcp.arguments; x }"), ["mcp.arguments"]);
        assert_eq!(paths("r if { f(input.token) }\nf(t) if t.subject"), ["token"]);
        assert_eq!(paths("r if input.mcp[input.kind]"), ["kind", "mcp"]);
        assert_eq!(paths("r if input.mcp.args[0]"), ["mcp.args"]);
    }

    #[test]
    fn bare_input_reads_everything() {
        assert_eq!(paths("r if json.marshal(input) != \"\""), [""]);
        assert_eq!(paths("r if { walk(input, [p, v]); v == 1 }\nq if input.kind"), [""]);
        assert_eq!(paths("r if object.get(input, input.kind, 1)"), [""]);
    }

    #[test]
    fn imports_and_with_count_as_reads() {
        assert_eq!(paths("import input.mcp as m\nr if m.id == 1"), ["mcp"]);
        assert_eq!(paths("r if { q with input.kind as \"x\" }\nq if input.phase"), ["kind", "phase"]);
        assert_eq!(paths("r if { q with data.d as input }\nq if data.d.x"), [""]);
    }

    #[test]
    fn object_get_with_literal_keys_reads_that_path() {
        assert_eq!(paths(r#"r if object.get(input, ["mcp", "method"], null)"#), ["mcp.method"]);
        assert_eq!(paths(r#"r if object.get(input.mcp, "tool", null)"#), ["mcp.tool"]);
        assert_eq!(paths(r#"r if { k := "tool"; object.get(input.mcp, k, null) }"#), ["mcp"]);
    }

    #[test]
    fn impure_builtins_make_a_set_uncacheable() {
        assert_eq!(reads("r if time.now_ns() > 0"), InputReads::Impure("time.now_ns".into()));
        assert_eq!(reads("r if { x := input.kind; http.send({}) }"), InputReads::Impure("http.send".into()));
    }
}
