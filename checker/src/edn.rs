//! A small EDN reader, enough for Jepsen histories: maps, vectors, lists, sets, keywords,
//! symbols, strings, characters, integers, floats, booleans, `nil`, `#tag form` and `#_ form`.
//! Values come out as JSON: keywords and symbols become strings without the colon, sets and
//! lists become arrays, map keys become strings. Ratios, big decimals and the like are not read.

use serde_json::{Map, Number, Value};

/// Deepest nesting accepted: protects the stack from hostile input.
const MAX_DEPTH: usize = 256;

/// Where parsing stopped and what it expected there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdnError {
    /// Byte offset in the input.
    pub offset: usize,
    pub expected: String,
}

pub struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str) -> Parser<'a> {
        Parser {
            src: src.as_bytes(),
            pos: 0,
        }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Skips whitespace, commas and `;` comments; true when input remains.
    pub fn skip_space(&mut self) -> bool {
        while let Some(&c) = self.src.get(self.pos) {
            if c.is_ascii_whitespace() || c == b',' {
                self.pos += 1;
            } else if c == b';' {
                while let Some(&c) = self.src.get(self.pos) {
                    if c == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                return true;
            }
        }
        false
    }

    pub fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.src.get(self.pos).copied()
    }

    pub fn expect_byte(&mut self, b: u8) -> Result<(), EdnError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("`{}`", b as char)))
        }
    }

    fn err(&self, expected: &str) -> EdnError {
        EdnError {
            offset: self.pos,
            expected: expected.to_string(),
        }
    }

    /// Reads one form.
    pub fn value(&mut self) -> Result<Value, EdnError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, EdnError> {
        if depth > MAX_DEPTH {
            return Err(self.err("less deeply nested data"));
        }
        let Some(c) = self.peek() else {
            return Err(self.err("a value"));
        };
        match c {
            b'{' => {
                self.pos += 1;
                let mut map = Map::new();
                loop {
                    match self.peek() {
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Object(map));
                        }
                        None => return Err(self.err("`}` closing the map")),
                        _ => {}
                    }
                    let k = self.value_at(depth + 1)?;
                    let k = match k {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if self.peek() == Some(b'}') {
                        return Err(self.err("a value for the map key"));
                    }
                    let v = self.value_at(depth + 1)?;
                    map.insert(k, v);
                }
            }
            b'[' | b'(' => {
                self.pos += 1;
                let close = if c == b'[' { b']' } else { b')' };
                self.seq(close, depth)
            }
            b'"' => self.string().map(Value::String),
            b'\\' => {
                self.pos += 1;
                let start = self.pos;
                self.pos += 1;
                while self
                    .src
                    .get(self.pos)
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                {
                    self.pos += 1;
                }
                let name = self.text(start, self.pos);
                let ch = match name.as_str() {
                    "newline" => "\n".to_string(),
                    "space" => " ".to_string(),
                    "tab" => "\t".to_string(),
                    "return" => "\r".to_string(),
                    _ => name,
                };
                Ok(Value::String(ch))
            }
            b'#' => {
                self.pos += 1;
                match self.src.get(self.pos) {
                    Some(b'{') => {
                        self.pos += 1;
                        self.seq(b'}', depth)
                    }
                    Some(b'_') => {
                        self.pos += 1;
                        self.value_at(depth + 1)?;
                        self.value_at(depth)
                    }
                    _ => {
                        // A tagged literal (`#inst "..."`, `#jepsen.history.Op{...}`): keep the form.
                        self.token();
                        self.value_at(depth + 1)
                    }
                }
            }
            b':' => {
                self.pos += 1;
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err("a keyword name after `:`"));
                }
                Ok(Value::String(t))
            }
            _ => {
                let t = self.token();
                if t.is_empty() {
                    return Err(self.err("a value"));
                }
                Ok(atom(&t))
            }
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Value, EdnError> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.err(&format!("`{}`", close as char))),
                _ => items.push(self.value_at(depth + 1)?),
            }
        }
    }

    fn string(&mut self) -> Result<String, EdnError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.src.get(self.pos) else {
                return Err(self.err("`\"` closing the string"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.src.get(self.pos) else {
                        return Err(self.err("an escape character"));
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'u' => {
                            let hex = self.src.get(self.pos..self.pos + 4).unwrap_or(&[]);
                            let hex = std::str::from_utf8(hex).unwrap_or("");
                            let Some(ch) =
                                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
                            else {
                                return Err(self.err("four hex digits after `\\u`"));
                            };
                            self.pos += 4;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("UTF-8 text in the string"))
    }

    /// A run of symbol characters.
    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(&c) = self.src.get(self.pos) {
            if c.is_ascii_whitespace() || b",;()[]{}\"".contains(&c) {
                break;
            }
            self.pos += 1;
        }
        self.text(start, self.pos)
    }

    fn text(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(&self.src[start..end.min(self.src.len())]).into_owned()
    }
}

fn atom(t: &str) -> Value {
    match t {
        "nil" => return Value::Null,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = t.strip_suffix('N').unwrap_or(t);
    if let Ok(i) = digits.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = digits.parse::<u64>() {
        return Value::Number(u.into());
    }
    let float = t.strip_suffix('M').unwrap_or(t);
    if float.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
        && let Ok(f) = float.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(t.to_string())
}

/// Parses a whole string holding exactly one form.
pub fn parse(src: &str) -> Result<Value, EdnError> {
    let mut p = Parser::new(src);
    let v = p.value()?;
    if p.skip_space() {
        return Err(p.err("the end of input after one value"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_jepsen_op() {
        let v = parse(r#"{:type :ok, :f :cas, :value [1 2], :process 3, :time 17, :error nil, :s "a\"b", :x #{1}}"#)
            .unwrap();
        assert_eq!(
            v,
            json!({"type": "ok", "f": "cas", "value": [1, 2], "process": 3, "time": 17,
                   "error": null, "s": "a\"b", "x": [1]})
        );
    }

    #[test]
    fn tagged_literals_and_discard() {
        assert_eq!(parse("#jepsen.history.Op{:a 1}").unwrap(), json!({"a": 1}));
        assert_eq!(parse("[1 #_ 2 3]").unwrap(), json!([1, 3]));
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = parse("{:a 1").unwrap_err();
        assert!(e.expected.contains('}'), "{e:?}");
        assert!(parse("[1 2").is_err());
        assert!(parse("\"abc").is_err());
        assert!(parse(&"[".repeat(10_000)).is_err());
    }
}
