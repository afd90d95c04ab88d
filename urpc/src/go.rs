//! Decoding an argument as Go's `json.Unmarshal` decodes it into the
//! receiver's Go type, with Go's error texts, so a wrong argument gets the
//! reply upstream's server gives (`json: cannot unmarshal string into Go
//! value of type int32`).
//!
//! A Go type is described by a [`GoType`]; [`decode`] checks a JSON value
//! against it the way `encoding/json` does (null leaves the zero value,
//! struct keys match case-insensitively, unknown keys are ignored,
//! integers must be whole and in range) and returns the value normalised
//! to the declared key names, ready for serde.

use serde_json::{Map, Value};

/// The Go type an argument decodes into.
#[derive(Debug)]
pub enum GoType {
    String,
    Bool,
    /// An integer type: its Go name (`int32`, `kernel.ThreadID`), signed,
    /// and bit width.
    Int {
        name: &'static str,
        signed: bool,
        bits: u32,
    },
    /// A slice: its Go name (`[]string`) and element type.
    Slice {
        name: &'static str,
        elem: &'static GoType,
    },
    Struct(&'static GoStruct),
    /// `interface{}` / `json.RawMessage`: anything goes.
    Any,
}

/// A Go struct: its qualified name and its fields (the JSON key, which is
/// the Go field name when the field has no tag, and the type).
#[derive(Debug)]
pub struct GoStruct {
    pub name: &'static str,
    pub fields: &'static [(&'static str, GoType)],
}

/// `struct{}`, the argument of calls that take none.
pub static EMPTY: GoStruct = GoStruct {
    name: "struct {}",
    fields: &[],
};

pub const INT32: GoType = GoType::Int {
    name: "int32",
    signed: true,
    bits: 32,
};
pub const UINT32: GoType = GoType::Int {
    name: "uint32",
    signed: false,
    bits: 32,
};
pub const INT: GoType = GoType::Int {
    name: "int",
    signed: true,
    bits: 64,
};
pub const STRINGS: GoType = GoType::Slice {
    name: "[]string",
    elem: &GoType::String,
};

/// How Go's errors name the JSON value that did not fit.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl GoType {
    fn name(&self) -> &'static str {
        match self {
            GoType::String => "string",
            GoType::Bool => "bool",
            GoType::Int { name, .. } | GoType::Slice { name, .. } => name,
            GoType::Struct(s) => s.name,
            GoType::Any => "interface {}",
        }
    }
}

/// Where a mismatch sits, for the error text.
struct Path<'a> {
    /// The outermost struct's unqualified name and the dotted key path.
    field: Option<(&'a str, String)>,
}

fn mismatch(what: &str, ty: &GoType, at: &Path<'_>) -> String {
    match &at.field {
        None => format!(
            "json: cannot unmarshal {what} into Go value of type {}",
            ty.name()
        ),
        Some((st, f)) => format!(
            "json: cannot unmarshal {what} into Go struct field {st}.{f} of type {}",
            ty.name()
        ),
    }
}

/// Check `v` against `ty` as `json.Unmarshal` would; the normalised value,
/// or Go's error text for the first mismatch.
pub fn decode(v: &Value, ty: &GoType) -> Result<Value, String> {
    let mut first = None;
    let out = walk(v, ty, &Path { field: None }, &mut first);
    match first {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Go keeps decoding after a type mismatch and reports the first one;
/// `first` collects it.
fn walk(v: &Value, ty: &GoType, at: &Path<'_>, first: &mut Option<String>) -> Value {
    let mut fail = |msg: String| {
        first.get_or_insert(msg);
        Value::Null
    };
    if v.is_null() {
        return Value::Null;
    }
    match ty {
        GoType::Any => v.clone(),
        GoType::String => match v {
            Value::String(_) => v.clone(),
            _ => fail(mismatch(kind(v), ty, at)),
        },
        GoType::Bool => match v {
            Value::Bool(_) => v.clone(),
            _ => fail(mismatch(kind(v), ty, at)),
        },
        GoType::Int { signed, bits, .. } => {
            let Value::Number(n) = v else {
                return fail(mismatch(kind(v), ty, at));
            };
            let fits = if *signed {
                n.as_i64()
                    .filter(|&i| {
                        *bits == 64 || (i >= -(1i64 << (bits - 1)) && i < (1i64 << (bits - 1)))
                    })
                    .map(Value::from)
            } else {
                n.as_u64()
                    .filter(|&u| *bits == 64 || u < (1u64 << bits))
                    .map(Value::from)
            };
            match fits {
                Some(v) => v,
                None => fail(mismatch(&format!("number {n}"), ty, at)),
            }
        }
        GoType::Slice { elem, .. } => {
            let Value::Array(items) = v else {
                return fail(mismatch(kind(v), ty, at));
            };
            Value::Array(items.iter().map(|i| walk(i, elem, at, first)).collect())
        }
        GoType::Struct(st) => {
            let Value::Object(obj) = v else {
                return fail(mismatch(kind(v), ty, at));
            };
            let short = st.name.rsplit('.').next().unwrap_or(st.name);
            let mut out = Map::new();
            for (key, fty) in st.fields {
                let Some(fv) = crate::wire::field(obj, key) else {
                    continue;
                };
                let path = match &at.field {
                    None => (short, (*key).to_string()),
                    Some((outer, p)) => (*outer, format!("{p}.{key}")),
                };
                let sub = Path { field: Some(path) };
                let d = walk(fv, fty, &sub, first);
                if !d.is_null() {
                    out.insert((*key).to_string(), d);
                }
            }
            Value::Object(out)
        }
    }
}
