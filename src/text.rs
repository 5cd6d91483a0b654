//! Text from outside (a file name, a value from a zone or a request) written where a person
//! reads it: a log line, `check` diagnostics, an error on stderr.
//!
//! The rule: control characters (C0, DEL, C1) and the Unicode line and paragraph separators
//! are written escaped, as Rust writes them (`\n`, `\u{1b}`), so such text can neither start
//! a line of its own nor drive the terminal.

use std::fmt;

/// Writes through to `W` with control characters and line separators escaped.
pub struct Escaping<'a, W: ?Sized>(pub &'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                write!(self.0, "{}", c.escape_default())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// `text` displayed with its control characters escaped, newlines included: one line.
pub struct Escaped<T>(pub T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        write!(Escaping(f), "{}", self.0)
    }
}

/// `text` with every control character escaped but its newlines: for text made of lines on
/// purpose (every diagnostic of a refused load), whose values were escaped where they were
/// written, while whatever was not still cannot drive the terminal.
pub fn escape_all_but_newlines(text: &str) -> String {
    text.split('\n')
        .map(|line| Escaped(line).to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_newlines_only_where_asked() {
        let outside = "a\u{1b}[2Jb\nc\r\u{85}d\u{2028}";
        assert_eq!(
            Escaped(outside).to_string(),
            "a\\u{1b}[2Jb\\nc\\r\\u{85}d\\u{2028}"
        );
        assert_eq!(
            escape_all_but_newlines(outside),
            "a\\u{1b}[2Jb\nc\\r\\u{85}d\\u{2028}"
        );
    }
}
