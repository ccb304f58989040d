//! Python `repr()` of JSON values and of pydantic validation errors, because
//! vLLM puts `str(exc.errors())` into its error message and clients (and
//! people reading incident logs) match on that exact text.

use serde_json::Value;

/// `repr(str)`: single quotes unless the text has a single quote and no
/// double quote, as CPython chooses.
pub(crate) fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr()` of the Python object `json.loads` would build.
pub(crate) fn py_value(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str(s),
        Value::Array(items) => format!("[{}]", items.iter().map(py_value).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", py_str(k), py_value(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// One element of a `loc` tuple.
#[derive(Debug, Clone)]
pub(crate) enum Loc {
    Key(String),
    Index(usize),
}

/// One pydantic v2 error dict.
#[derive(Debug, Clone)]
pub(crate) struct PyError {
    pub ty: String,
    pub loc: Vec<Loc>,
    pub msg: String,
    /// Already rendered with [`py_value`] (or `{}` for json_invalid).
    pub input: String,
    pub ctx: Vec<(String, String)>,
}

impl PyError {
    pub(super) fn new(ty: &str, loc: Vec<Loc>, msg: &str, input: String) -> PyError {
        PyError { ty: ty.into(), loc, msg: msg.into(), input, ctx: Vec::new() }
    }

    pub(crate) fn with_ctx(mut self, key: &str, value: &str) -> PyError {
        self.ctx.push((key.into(), value.into()));
        self
    }

    fn render(&self) -> String {
        let loc: Vec<String> = self
            .loc
            .iter()
            .map(|l| match l {
                Loc::Key(k) => py_str(k),
                Loc::Index(i) => i.to_string(),
            })
            .collect();
        let loc = if loc.len() == 1 { format!("({},)", loc[0]) } else { format!("({})", loc.join(", ")) };
        let mut out = format!(
            "{{'type': {}, 'loc': {}, 'msg': {}, 'input': {}",
            py_str(&self.ty),
            loc,
            py_str(&self.msg),
            self.input
        );
        if !self.ctx.is_empty() {
            let ctx: Vec<String> = self.ctx.iter().map(|(k, v)| format!("{}: {}", py_str(k), py_str(v))).collect();
            out.push_str(&format!(", 'ctx': {{{}}}", ctx.join(", ")));
        }
        out.push('}');
        out
    }
}

/// `str(list_of_error_dicts)`.
pub(crate) fn render(errors: &[PyError]) -> String {
    format!("[{}]", errors.iter().map(PyError::render).collect::<Vec<_>>().join(", "))
}

/// `('body', key)`.
pub(crate) fn body_loc(key: &str) -> Vec<Loc> {
    vec![Loc::Key("body".into()), Loc::Key(key.into())]
}
