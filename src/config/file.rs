//! The config file's syntax: lines, comments and quoted values (README,
//! "Config file"). What the names mean is `config`'s business.
//!
//! - One `name = value` per line; blank lines are ignored.
//! - `#` starts a comment at the start of a line or after whitespace
//!   outside quotes, so `a#b` is a value and `a #b` is `a`.
//! - A bare value runs to the end of the line or the comment, without the
//!   whitespace around it; inner whitespace stays (`* specified admin`). It
//!   may not contain a quote character.
//! - A quoted value covers the whole value: `'...'` is literal (no escapes,
//!   no `'` inside), `"..."` knows exactly the escapes `\\ \" \n \r \t`
//!   and `\u{HEX}` (a Unicode scalar value, 1 to 6 hex digits).
//! - Control characters other than tab are never taken raw: inside double
//!   quotes they are written as escapes.
//!
//! Anything else (an unterminated quote, text after the closing quote, a
//! quote inside a bare value, an unknown escape) is an error, never a value
//! that differs from what the line seems to say.

use std::borrow::Cow;

/// Space and tab, the only whitespace of the syntax.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits a line into its name and the text after `=`; `None` for a blank
/// or comment line.
pub(crate) fn split(line: &str) -> Result<Option<(&str, &str)>, String> {
    let body = line.trim_start_matches(is_blank);
    if body.is_empty() || body.starts_with('#') {
        return Ok(None);
    }
    let expected = || format!("expected `name = value`, found {line:?}");
    let (name, rest) = body.split_once('=').ok_or_else(expected)?;
    let name = name.trim_end_matches(is_blank);
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '-';
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(expected());
    }
    Ok(Some((name, rest)))
}

/// The value in `raw`, the text after a line's `=`.
pub(crate) fn value(raw: &str) -> Result<String, String> {
    let text = raw.trim_start_matches(is_blank);
    // `=` itself is not whitespace: `name =#x` has the value `#x`.
    let after_blank = text.len() < raw.len();
    let rest = match text.chars().next() {
        None => return Ok(String::new()),
        Some('#') if after_blank => return Ok(String::new()),
        Some(quote @ ('"' | '\'')) => {
            let (value, rest) = quoted(quote, &text[1..])?;
            if !is_comment_or_nothing(rest) {
                return Err(format!("text after the closing quote: {rest:?}"));
            }
            return Ok(value);
        }
        Some(_) => text,
    };
    bare(rest)
}

/// A bare value: up to the end or a comment, trimmed, without quotes.
fn bare(text: &str) -> Result<String, String> {
    let mut end = text.len();
    // The caller took a `#` right after whitespace as a comment already.
    let mut prev = '=';
    for (i, c) in text.char_indices() {
        if c == '#' && is_blank(prev) {
            end = i;
            break;
        }
        if c == '"' || c == '\'' {
            return Err(format!(
                "quote {c:?} inside an unquoted value (quote the whole value)"
            ));
        }
        check_raw(c)?;
        prev = c;
    }
    Ok(text[..end].trim_end_matches(is_blank).to_string())
}

/// The value of a string opened by `quote`, and the text after its close.
fn quoted(quote: char, text: &str) -> Result<(String, &str), String> {
    let unterminated = || {
        let kind = if quote == '"' { "double" } else { "single" };
        format!("unterminated {kind} quote")
    };
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((value, &text[i + 1..])),
            '\\' if quote == '"' => {
                let (_, e) = chars.next().ok_or_else(unterminated)?;
                value.push(match e {
                    '\\' | '"' => e,
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => unicode_escape(&mut chars)?,
                    other => return Err(unknown_escape(&other.escape_debug().to_string())),
                });
            }
            c => {
                check_raw(c)?;
                value.push(c);
            }
        }
    }
    Err(unterminated())
}

/// The character of `\u{HEX}`, after its `u`.
fn unicode_escape(chars: &mut std::str::CharIndices<'_>) -> Result<char, String> {
    let Some(text) = chars.as_str().strip_prefix('{') else {
        return Err(unknown_escape("u"));
    };
    let hex = text.split('}').next().unwrap_or("");
    let closed = chars.as_str().len() > hex.len() + 1;
    let c = match closed && (1..=6).contains(&hex.len()) {
        // from_str_radix would take a sign too.
        true if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
        }
        _ => None,
    };
    // Skip `{HEX}`: ASCII, one char per byte.
    chars.nth(hex.len() + 1);
    c.ok_or_else(|| {
        format!(
            "bad escape \\u{{{}}}: expected 1 to 6 hex digits naming a Unicode scalar value",
            hex.escape_debug()
        )
    })
}

fn unknown_escape(what: &str) -> String {
    format!("unknown escape \\{what} (known: \\\\ \\\" \\n \\r \\t \\u{{HEX}})")
}

/// A raw character in a value: anything but a control character (tab is
/// whitespace, not a control, here).
fn check_raw(c: char) -> Result<(), String> {
    match c.is_control() && c != '\t' {
        true => Err(format!(
            "control character U+{:04X} (write it as an escape in double quotes)",
            u32::from(c)
        )),
        false => Ok(()),
    }
}

fn is_comment_or_nothing(rest: &str) -> bool {
    let text = rest.trim_start_matches(is_blank);
    text.is_empty() || (text.starts_with('#') && text.len() < rest.len())
}

/// `value` as the config file writes it: bare when [`value`] reads that
/// back unchanged, else double-quoted with escapes.
pub(crate) fn quote(value: &str) -> Cow<'_, str> {
    let mut prev = ' ';
    let bare_ok = !value.is_empty()
        && !value.starts_with(is_blank)
        && !value.ends_with(is_blank)
        && value.chars().all(|c| {
            let ok = !(c == '"' || c == '\'' || c.is_control() || c == '#' && is_blank(prev));
            prev = c;
            ok
        });
    if bare_ok {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Result<Option<(String, String)>, String> {
        Ok(match split(text)? {
            Some((name, raw)) => Some((name.to_string(), value(raw)?)),
            None => None,
        })
    }

    fn setting(text: &str) -> (String, String) {
        line(text)
            .unwrap()
            .unwrap_or_else(|| panic!("{text:?}: no setting"))
    }

    #[test]
    fn blank_and_comment_lines_are_nothing() {
        for text in [
            "",
            "   ",
            "\t",
            "# note",
            "   # indented = note",
            "#user = x",
        ] {
            assert_eq!(line(text), Ok(None), "{text:?}");
        }
    }

    #[test]
    fn bare_values_are_trimmed_and_end_at_a_comment() {
        for (text, want) in [
            ("user = admin", "admin"),
            ("user=admin", "admin"),
            ("  user\t=\tadmin  ", "admin"),
            ("user = admin   # the demo user", "admin"),
            ("user = admin\t# tab before the comment", "admin"),
            ("map = * specified admin", "* specified admin"),
            ("map = *  specified\tadmin #x", "*  specified\tadmin"),
            ("user = a#b", "a#b"),
            ("user =#x", "#x"),
            ("user = a=b", "a=b"),
            ("home = C:\\homes\\%u", "C:\\homes\\%u"),
            ("user = j\u{fc}rgen", "j\u{fc}rgen"),
            ("groups =", ""),
            ("groups =   # none", ""),
        ] {
            assert_eq!(setting(text).1, want, "{text:?}");
        }
        assert_eq!(setting("max-sessions-per-ip = 0").0, "max-sessions-per-ip");
    }

    #[test]
    fn quoted_values_lose_their_quotes() {
        for (text, want) in [
            ("user = 'admin'", "admin"),
            ("user = \"admin\"", "admin"),
            (
                "user = \"admin   # not a comment\"",
                "admin   # not a comment",
            ),
            ("user = ' padded '  # comment", " padded "),
            ("user = 'it\"s'", "it\"s"),
            ("user = \"it's\"", "it's"),
            ("user = 'a\\b'", "a\\b"),
            ("user = \"a\\\\b \\\"q\\\" \\n\\r\\t\"", "a\\b \"q\" \n\r\t"),
            ("user = \"\\u{fc}\\u{1F600}\\u{0}\"", "\u{fc}\u{1F600}\u{0}"),
            ("groups = ''", ""),
            ("groups = \"\"", ""),
            ("user = \"tab\tinside\"", "tab\tinside"),
        ] {
            assert_eq!(setting(text).1, want, "{text:?}");
        }
    }

    #[test]
    fn anything_ambiguous_is_an_error() {
        for (text, want) in [
            ("user", "expected `name = value`"),
            ("= admin", "expected `name = value`"),
            ("user name = admin", "expected `name = value`"),
            ("user = 'admin", "unterminated single quote"),
            ("user = \"admin", "unterminated double quote"),
            ("user = \"admin\\\"", "unterminated double quote"),
            ("user = \"admin\\", "unterminated double quote"),
            ("user = 'it's'", "text after the closing quote: \"s'\""),
            ("user = 'admin' x", "text after the closing quote"),
            ("user = 'admin'#x", "text after the closing quote"),
            ("user = a'b", "quote '\\'' inside an unquoted value"),
            ("user = admin\"", "quote '\"' inside an unquoted value"),
            ("user = \"\\q\"", "unknown escape \\q"),
            ("user = \"\\x41\"", "unknown escape \\x"),
            ("user = \"\\u41\"", "unknown escape \\u ("),
            (
                "user = \"\\u{}\"",
                "bad escape \\u{}: expected 1 to 6 hex digits",
            ),
            ("user = \"\\u{d800}\"", "bad escape \\u{d800}"),
            ("user = \"\\u{1234567}\"", "bad escape \\u{1234567}"),
            ("user = \"\\u{+41}\"", "bad escape \\u{+41}"),
            ("user = \"\\u{41\"", "bad escape"),
            ("user = a\rb", "control character U+000D"),
            ("user = 'a\u{1}b'", "control character U+0001"),
            ("user = \"a\u{85}\"", "control character U+0085"),
        ] {
            let err = line(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    /// Found by the config_file fuzz target: an escape's text went into
    /// the error as it was, so `\` or `\u{` followed by a carriage return
    /// made an error that rewrites its own line. Errors show it escaped.
    #[test]
    fn errors_show_control_characters_escaped() {
        for (text, want) in [
            ("user = \"\\\r\"", "unknown escape \\\\r ("),
            ("user = \"\\u{fc\rx}\"", "bad escape \\u{fc\\rx}:"),
        ] {
            let err = line(text).unwrap_err();
            assert!(!err.contains(char::is_control), "{err:?}");
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    /// Whatever the value, quoting it and reading it back gives it exactly.
    #[test]
    fn quote_round_trips_any_value() {
        let pieces = [
            "", " ", "\t", "#", "a", "'", "\"", "\\", "\n", "\r", "\0", "\u{7f}", "\u{85}",
            "\u{fc}", "=", ";", "]", "u{", "}", "\\u{41}",
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 7) as usize;
            let v: String = (0..len)
                .map(|i| pieces[((seed >> (i * 5)) % pieces.len() as u64) as usize])
                .collect();
            let text = format!("user = {}", quote(&v));
            assert_eq!(setting(&text).1, v, "{text:?}");
            // A comment after it changes nothing.
            assert_eq!(setting(&format!("{text} # c")).1, v, "{text:?}");
        }
        assert_eq!(quote("admin"), "admin");
        assert_eq!(quote("* specified admin"), "* specified admin");
        assert_eq!(quote("a#b"), "a#b");
        assert_eq!(quote("a #b"), "\"a #b\"");
        assert_eq!(quote(""), "\"\"");
    }
}
