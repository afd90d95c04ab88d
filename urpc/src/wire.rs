//! The two message shapes and their encodings, byte for byte as Go's
//! `encoding/json` writes them (compact; `<`, `>`, `&`, U+2028 and U+2029
//! escaped as `\u003c` and so on).

use serde::Serialize;
use serde_json::{Map, Value};

/// A call as the server reads it (upstream's `serverCall`).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The raw argument (`null` when absent).
    pub arg: Value,
}

/// A reply as the client reads it (upstream's `callResult`).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub success: bool,
    pub err: String,
    pub result: Value,
}

/// serde_json's compact output plus Go's HTML-safe string escapes.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Encode `v` as Go's `json.Marshal` would.
pub fn to_go_json(v: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing a Value or a plain struct into a Vec cannot fail.
    if v.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

#[derive(Serialize)]
struct CallOut<'a> {
    method: &'a str,
    arg: &'a Value,
}

#[derive(Serialize)]
struct ResultOut<'a> {
    success: bool,
    err: &'a str,
    result: &'a Value,
}

pub fn encode_request(method: &str, arg: &Value) -> Vec<u8> {
    to_go_json(&CallOut { method, arg })
}

/// A success reply around `result`, the result already encoded (so a
/// struct keeps its field order, as Go writes it).
pub fn encode_success(result: &[u8]) -> Vec<u8> {
    let mut out = br#"{"success":true,"err":"","result":"#.to_vec();
    out.extend_from_slice(result);
    out.push(b'}');
    out
}

pub fn encode_error(err: &str) -> Vec<u8> {
    to_go_json(&ResultOut {
        success: false,
        err,
        result: &Value::Null,
    })
}

/// The value of `key` in `obj`, matched as Go's decoder matches struct
/// fields: an exact key first, else a key equal ignoring ASCII case. (Go
/// lets the last of several such keys win; the parsed map has lost their
/// order, so which one is taken then is unspecified.)
pub fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Decode a call. An error means upstream's server would drop the client
/// (its `serverCall` does not decode).
pub fn decode_request(v: &Value) -> Result<Request, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type urpc.serverCall",
            crate::go::kind(v)
        ));
    };
    let method = match field(obj, "method") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field serverCall.method of type string",
                crate::go::kind(other)
            ))
        }
    };
    let arg = field(obj, "arg").cloned().unwrap_or(Value::Null);
    Ok(Request { method, arg })
}

/// Decode a reply.
pub fn decode_response(v: &Value) -> Result<Response, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type urpc.callResult",
            crate::go::kind(v)
        ));
    };
    let success = match field(obj, "success") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field callResult.success of type bool",
                crate::go::kind(other)
            ))
        }
    };
    let err = match field(obj, "err") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field callResult.err of type string",
                crate::go::kind(other)
            ))
        }
    };
    let result = field(obj, "result").cloned().unwrap_or(Value::Null);
    Ok(Response {
        success,
        err,
        result,
    })
}
