//! A small re-implementation of Go's `flag` package: the parsing rules
//! (`FlagSet.parseOne`), the value syntaxes of the built-in flag types
//! (`strconv.ParseBool`, `strconv.ParseInt(s, 0, 64)`, `strconv.ParseUint`,
//! `time.ParseDuration`) with their canonical `String()` forms, the error
//! wording of `FlagSet.failf`, and the `PrintDefaults` layout.

use std::fmt::Write as _;

/// How a flag's value is parsed, stored and described.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// Go `flag.Bool`: takes a value only as `-name=value`.
    Bool,
    /// Go `flag.String`.
    Str,
    /// Go `flag.Int` (64-bit): `strconv.ParseInt(s, 0, 64)`.
    Int,
    /// Go `flag.Uint` / `flag.Uint64`: `strconv.ParseUint(s, 0, 64)`.
    Uint,
    /// Go `flag.Float64`.
    Float,
    /// Go `flag.Duration`: `time.ParseDuration`.
    Duration,
    /// A custom `flag.Value`: `check` validates a value and returns its
    /// canonical form or the error text of the Go type's `Set`; `zero` is the
    /// `String()` of the Go type's zero value (used by `PrintDefaults` to decide
    /// whether to show the default).
    Value {
        check: fn(&str) -> Result<String, String>,
        zero: &'static str,
    },
    /// A repeatable list of integers (`-x=1 -x=2` or `-x=1,2`), like runsc's
    /// `intFlags`.
    IntList,
    /// A repeatable list of strings; `check` validates each occurrence.
    StrList {
        check: fn(&str) -> Result<(), String>,
    },
}

impl Kind {
    /// True for list kinds, whose values accumulate.
    pub(crate) fn is_list(self) -> bool {
        matches!(self, Kind::IntList | Kind::StrList { .. })
    }

    /// The type name `flag.UnquoteUsage` prints for this kind.
    fn type_name(self) -> &'static str {
        match self {
            Kind::Bool => "",
            Kind::Str => "string",
            Kind::Int => "int",
            Kind::Uint => "uint",
            Kind::Float => "float",
            Kind::Duration => "duration",
            Kind::Value { .. } | Kind::IntList | Kind::StrList { .. } => "value",
        }
    }

    /// `String()` of the zero value of the Go type.
    fn zero(self) -> &'static str {
        match self {
            Kind::Bool => "false",
            Kind::Str | Kind::IntList | Kind::StrList { .. } => "",
            Kind::Int | Kind::Uint | Kind::Float => "0",
            Kind::Duration => "0s",
            Kind::Value { zero, .. } => zero,
        }
    }
}

/// Whether our implementation honours a non-default value of a flag.
#[derive(Clone, Copy)]
pub(crate) enum Support {
    /// Any valid value works.
    Yes,
    /// Only the default and these values work.
    Only(&'static [&'static str]),
    /// Only the default value works.
    No,
}

/// One flag definition (the `flag.FlagSet` registration, as data).
pub(crate) struct FlagDef {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// Default, in the canonical form `String()` would print (Go's `DefValue`).
    pub(crate) default: &'static str,
    pub(crate) help: &'static str,
    pub(crate) support: Support,
}

/// A flag set's values after parsing, indexed like the definition table.
pub(crate) struct Values {
    /// Canonical value of scalar flags (the default when not given).
    pub(crate) scalars: Vec<String>,
    /// Accumulated items of list flags (empty for scalar flags).
    pub(crate) lists: Vec<Vec<String>>,
    /// Whether the flag appeared on the command line.
    pub(crate) set: Vec<bool>,
}

impl Values {
    fn defaults(defs: &[FlagDef]) -> Self {
        Values {
            scalars: defs.iter().map(|d| d.default.to_string()).collect(),
            lists: defs.iter().map(|_| Vec::new()).collect(),
            set: vec![false; defs.len()],
        }
    }
}

/// A parse failure, worded as Go's `FlagSet.failf` words it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// `-help` or `-h` was given and is not a defined flag (Go's `ErrHelp`).
    Help,
    /// Any other failure; the text is Go's message.
    Bad(String),
}

/// Index of the definition called `name`.
pub(crate) fn lookup(defs: &[FlagDef], name: &str) -> Option<usize> {
    defs.iter().position(|d| d.name == name)
}

/// Parses flags from the front of `args` with Go's rules and returns the
/// values and the remaining (positional) arguments. Parsing stops at the first
/// non-flag argument (a lone `-` is a non-flag) or after `--`, which is
/// consumed.
pub(crate) fn parse(
    defs: &[FlagDef],
    args: &[String],
) -> Result<(Values, Vec<String>), ParseError> {
    let mut values = Values::defaults(defs);
    let mut i = 0;
    while i < args.len() {
        let s = args[i].as_str();
        let b = s.as_bytes();
        if b.len() < 2 || b[0] != b'-' {
            break;
        }
        let mut minuses = 1;
        if b[1] == b'-' {
            minuses = 2;
            if b.len() == 2 {
                i += 1;
                break;
            }
        }
        let name_and_value = &s[minuses..];
        if name_and_value.is_empty()
            || name_and_value.starts_with('-')
            || name_and_value.starts_with('=')
        {
            return Err(ParseError::Bad(format!("bad flag syntax: {s}")));
        }
        i += 1;
        let (name, mut value) = match name_and_value.find('=') {
            Some(eq) => (
                &name_and_value[..eq],
                Some(name_and_value[eq + 1..].to_string()),
            ),
            None => (name_and_value, None),
        };
        let Some(idx) = lookup(defs, name) else {
            if name == "help" || name == "h" {
                return Err(ParseError::Help);
            }
            return Err(ParseError::Bad(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let def = &defs[idx];
        if let Kind::Bool = def.kind {
            let v = value.as_deref().unwrap_or("true");
            match parse_bool(v) {
                Some(x) => values.scalars[idx] = x.to_string(),
                None => {
                    return Err(ParseError::Bad(format!(
                        "invalid boolean value {} for -{name}: parse error",
                        go_quote(v)
                    )))
                }
            }
        } else {
            if value.is_none() && i < args.len() {
                value = Some(args[i].clone());
                i += 1;
            }
            let Some(v) = value else {
                return Err(ParseError::Bad(format!("flag needs an argument: -{name}")));
            };
            set_value(def.kind, &v, idx, &mut values).map_err(|e| {
                ParseError::Bad(format!(
                    "invalid value {} for flag -{name}: {e}",
                    go_quote(&v)
                ))
            })?;
        }
        values.set[idx] = true;
    }
    Ok((values, args[i..].to_vec()))
}

/// Applies one occurrence of a non-bool flag; the error is the text Go's
/// `Value.Set` would return.
fn set_value(kind: Kind, v: &str, idx: usize, values: &mut Values) -> Result<(), String> {
    let canonical = match kind {
        Kind::Bool => unreachable!("bool flags are handled by the caller"),
        Kind::Str => v.to_string(),
        Kind::Int => parse_int(v).map_err(NumError::text)?.to_string(),
        Kind::Uint => parse_uint(v).map_err(NumError::text)?.to_string(),
        Kind::Float => parse_float(v)?,
        Kind::Duration => format_duration(parse_duration(v).ok_or("parse error")?),
        Kind::Value { check, .. } => check(v)?,
        Kind::IntList => {
            let mut items = Vec::new();
            for part in v.split(',') {
                let n = parse_atoi(part).map_err(|e| {
                    format!(
                        "invalid flag value: strconv.Atoi: parsing {}: {}",
                        go_quote(part),
                        e.atoi_text()
                    )
                })?;
                if n < -1 {
                    return Err(format!("flag value must be >= -1: {n}"));
                }
                items.push(n.to_string());
            }
            values.lists[idx].extend(items);
            values.scalars[idx] = values.lists[idx].join(",");
            return Ok(());
        }
        Kind::StrList { check } => {
            check(v)?;
            values.lists[idx].push(v.to_string());
            values.scalars[idx] = values.lists[idx].join(",");
            return Ok(());
        }
    };
    values.scalars[idx] = canonical;
    Ok(())
}

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The two failure classes of `strconv` number parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    Syntax,
    Range,
}

impl NumError {
    /// The text the Go flag package reports (`errParse` / `errRange`).
    fn text(self) -> String {
        match self {
            NumError::Syntax => "parse error".to_string(),
            NumError::Range => "value out of range".to_string(),
        }
    }

    /// The text `strconv.Atoi` reports.
    fn atoi_text(self) -> &'static str {
        match self {
            NumError::Syntax => "invalid syntax",
            NumError::Range => "value out of range",
        }
    }
}

/// `strconv.ParseUint(s, 0, 64)`: optional `0x`/`0o`/`0b` prefix, a leading
/// `0` meaning octal, and `_` digit separators.
pub(crate) fn parse_uint(s: &str) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let b = s.as_bytes();
    let (base, digits): (u64, &[u8]) = if b[0] == b'0' {
        if b.len() >= 3 && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
            let base = match b[1].to_ascii_lowercase() {
                b'b' => 2,
                b'o' => 8,
                _ => 16,
            };
            (base, &b[2..])
        } else {
            (8, &b[1..])
        }
    } else {
        (10, b)
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    let mut overflow = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'z' => u64::from(c - b'a') + 10,
            b'A'..=b'Z' => u64::from(c - b'A') + 10,
            _ => return Err(NumError::Syntax),
        };
        if d >= base {
            return Err(NumError::Syntax);
        }
        match n.checked_mul(base).and_then(|x| x.checked_add(d)) {
            Some(x) => n = x,
            None => overflow = true,
        }
    }
    if underscores && !underscore_ok(s) {
        return Err(NumError::Syntax);
    }
    if overflow {
        return Err(NumError::Range);
    }
    Ok(n)
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn parse_int(s: &str) -> Result<i64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let un = parse_uint(body)?;
    const CUTOFF: u64 = 1 << 63;
    if !neg && un >= CUTOFF {
        return Err(NumError::Range);
    }
    if neg && un > CUTOFF {
        return Err(NumError::Range);
    }
    Ok(if neg {
        (un as i64).wrapping_neg()
    } else {
        un as i64
    })
}

/// `strconv.Atoi`: decimal only, optional sign, no separators.
fn parse_atoi(s: &str) -> Result<i64, NumError> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|c| c.is_ascii_digit()) {
        return Err(NumError::Syntax);
    }
    s.parse::<i64>().map_err(|_| NumError::Range)
}

/// Go's `underscoreOK`: underscores may only separate digits (or follow a
/// base prefix).
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some((&c, rest)) = b.split_first() {
        if c == b'-' || c == b'+' {
            b = rest;
        }
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// A float, validated with Rust's parser (the same as Go's `ParseFloat` for
/// decimal input; Go's hex floats are not accepted); stored as given.
fn parse_float(s: &str) -> Result<String, String> {
    match s.parse::<f64>() {
        Ok(_) => Ok(s.to_string()),
        Err(_) => Err("parse error".to_string()),
    }
}

/// `time.ParseDuration`, in nanoseconds. `None` on any error.
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // Integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_digits = &rest[..int_len];
        rest = &rest[int_len..];
        // Fraction.
        let mut frac_digits = "";
        if let Some(r) = rest.strip_prefix('.') {
            let frac_len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_digits = &r[..frac_len];
            rest = &r[frac_len..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            // "." alone or no digits at all.
            return None;
        }
        // Unit.
        let unit_len = rest
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let int_val: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().ok()?
        };
        let mut v = int_val.checked_mul(scale)?;
        if !frac_digits.is_empty() {
            // Go truncates the fraction to the precision of the unit.
            let mut f: u128 = 0;
            let mut div: u128 = 1;
            for c in frac_digits.bytes().take(30) {
                f = f * 10 + u128::from(c - b'0');
                div *= 10;
            }
            v += f * scale / div;
        }
        total = total.checked_add(v)?;
        if total > (1u128 << 63) {
            return None;
        }
    }
    if neg {
        Some((total as i128).wrapping_neg() as i64)
    } else if total > i64::MAX as u128 {
        None
    } else {
        Some(total as i64)
    }
}

/// `time.Duration.String()`.
pub(crate) fn format_duration(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        if u == 0 {
            return "0s".to_string();
        }
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        out.push_str(&fmt_frac_int(u, prec));
        out.push_str(unit);
    } else {
        let frac = u % 1_000_000_000;
        u /= 1_000_000_000;
        let secs = u % 60;
        u /= 60;
        let mins = u % 60;
        let hours = u / 60;
        if hours > 0 {
            let _ = write!(out, "{hours}h{mins}m");
        } else if mins > 0 {
            let _ = write!(out, "{mins}m");
        }
        let _ = write!(out, "{secs}");
        if frac != 0 {
            let f = format!("{frac:09}");
            out.push('.');
            out.push_str(f.trim_end_matches('0'));
        }
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `v / 10^prec` with the fraction, trailing zeros (and a bare point) omitted.
fn fmt_frac_int(v: u64, prec: u32) -> String {
    let p = 10u64.pow(prec);
    let (int, frac) = (v / p, v % p);
    if frac == 0 {
        return int.to_string();
    }
    let f = format!("{frac:0width$}", width = prec as usize);
    format!("{int}.{}", f.trim_end_matches('0'))
}

/// Go's `%q` for the strings we quote (`strconv.Quote`).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `FlagSet.PrintDefaults`: flags sorted by name, each as
/// `  -name type\n    \thelp (default X)\n`.
pub(crate) fn print_defaults(defs: &[FlagDef]) -> String {
    let mut sorted: Vec<&FlagDef> = defs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = String::new();
    for def in sorted {
        let mut line = format!("  -{}", def.name);
        let ty = def.kind.type_name();
        if !ty.is_empty() {
            line.push(' ');
            line.push_str(ty);
        }
        if line.len() <= 4 {
            line.push('\t');
        } else {
            line.push_str("\n    \t");
        }
        line.push_str(&def.help.replace('\n', "\n    \t"));
        if def.default != def.kind.zero() {
            if let Kind::Str = def.kind {
                let _ = write!(line, " (default {})", go_quote(def.default));
            } else {
                let _ = write!(line, " (default {})", def.default);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}
