//! logfmt: the `key=value` pairs of the session log lines, written so that a
//! program splits them without guessing, whatever a certificate says.
//!
//! A value is written bare when it is non-empty printable ASCII without
//! space, `=`, `"` or `\`. Anything else is double-quoted, with `\"`, `\\`,
//! `\n`, `\r`, `\t`, and `\uXXXX` (UTF-16 code units, surrogate pairs beyond
//! U+FFFF) for every other control or non-ASCII character. Those are JSON's
//! string escapes, which go-logfmt and the parsers compatible with it
//! decode. The line stays printable ASCII: a hostile name cannot end it,
//! forge a key, or hide behind terminal control or bidi characters.

use std::fmt::{self, Write};

/// `key=value` pairs, in the order added, separated by one space.
#[derive(Default)]
pub struct Pairs(String);

impl Pairs {
    /// No pairs yet.
    pub fn new() -> Pairs {
        Pairs::default()
    }

    /// Adds `key=value`, quoting the value when it needs it. Keys are ours:
    /// plain kebab-case words.
    pub fn add(&mut self, key: &str, value: impl fmt::Display) -> &mut Pairs {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        let value = value.to_string();
        push_value(&mut self.0, &value);
        self
    }

    /// Adds `key=value` only when there is a value: an unknown field is left
    /// out rather than written as a placeholder a name could also be.
    pub fn add_some(&mut self, key: &str, value: Option<impl fmt::Display>) -> &mut Pairs {
        if let Some(value) = value {
            self.add(key, value);
        }
        self
    }
}

impl fmt::Display for Pairs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for a byte that may stand in a bare value.
fn bare(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '=' | '"' | '\\')
}

fn push_value(out: &mut String, value: &str) {
    if !value.is_empty() && value.chars().all(bare) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> String {
        Pairs::new().add("k", value).to_string()
    }

    #[test]
    fn plain_values_stay_bare() {
        let mut p = Pairs::new();
        p.add("session", 7)
            .add("client", "[::1]:6513")
            .add("sha256", "AB:CD")
            .add_some("user", None::<&str>)
            .add("tls", "TLSv1_3/TLS13_AES_128_GCM_SHA256");
        assert_eq!(
            p.to_string(),
            "session=7 client=[::1]:6513 sha256=AB:CD tls=TLSv1_3/TLS13_AES_128_GCM_SHA256"
        );
    }

    #[test]
    fn values_that_could_split_or_forge_are_quoted() {
        assert_eq!(one(r#"al"ice=1 user=root"#), r#"k="al\"ice=1 user=root""#);
        assert_eq!(one("CN=admin"), r#"k="CN=admin""#);
        assert_eq!(one("a b"), r#"k="a b""#);
        assert_eq!(one(r"C:\x"), r#"k="C:\\x""#);
        assert_eq!(one(""), r#"k="""#);
        assert_eq!(one("a\nb\r\tc"), r#"k="a\nb\r\tc""#);
    }

    #[test]
    fn control_and_non_ascii_characters_become_json_escapes() {
        assert_eq!(one("\u{1b}[31m\u{7f}\0"), r#"k="\u001b[31m\u007f\u0000""#);
        assert_eq!(one("J\u{fc}rgen"), r#"k="J\u00fcrgen""#);
        assert_eq!(one("\u{202e}"), r#"k="\u202e""#);
        assert_eq!(one("\u{1f600}"), r#"k="\ud83d\ude00""#);
    }
}
