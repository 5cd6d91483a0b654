//! RFC 1035 master-file records with line numbers.
//!
//! hickory-proto's parser does the real parsing but reports no position, so the text is first
//! cut into logical entries (a record may span lines inside parentheses), and each entry is
//! parsed on its own with the context it inherits: `$ORIGIN`, `$TTL` (or the last TTL, as
//! RFC 1035 §5.1 says) and the previous owner for lines that start with a blank.

use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::txt::Parser;

/// A parsed record and the line of the file where its entry starts.
#[derive(Debug, Clone)]
pub struct LineRecord {
    pub line: usize,
    pub record: Record,
}

/// A problem at a line of the records text.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    pub line: usize,
    pub message: String,
}

/// One logical entry: its first line and its text.
struct Entry<'a> {
    line: usize,
    text: &'a str,
}

/// Cuts `text` into logical entries. `first_line` is the file line of the text's first line.
fn entries(text: &str, first_line: usize) -> Result<Vec<Entry<'_>>, RecordError> {
    let mut out = Vec::new();
    let (mut depth, mut open_line) = (0usize, 0usize);
    let (mut in_quote, mut in_comment, mut escaped) = (false, false, false);
    let mut start = 0;
    let mut line = first_line;
    let mut start_line = first_line;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            if in_quote {
                return Err(RecordError {
                    line,
                    message: "unterminated quoted string".into(),
                });
            }
            in_comment = false;
            escaped = false;
            if depth == 0 {
                out.push(Entry {
                    line: start_line,
                    text: &text[start..i],
                });
                start = i + 1;
                start_line = line + 1;
            }
            line += 1;
            continue;
        }
        if in_comment {
            continue;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => in_quote = !in_quote,
            ';' if !in_quote => in_comment = true,
            '(' if !in_quote => {
                if depth == 0 {
                    open_line = line;
                }
                depth += 1;
            }
            ')' if !in_quote => {
                if depth == 0 {
                    return Err(RecordError {
                        line,
                        message: "')' without a matching '('".into(),
                    });
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    if in_quote {
        return Err(RecordError {
            line,
            message: "unterminated quoted string".into(),
        });
    }
    if depth > 0 {
        return Err(RecordError {
            line: open_line,
            message: "'(' is never closed".into(),
        });
    }
    out.push(Entry {
        line: start_line,
        text: &text[start..],
    });
    Ok(out)
}

/// True when the entry holds nothing but blanks and a comment.
fn is_blank(text: &str) -> bool {
    let code = text.split(';').next().unwrap_or("");
    code.trim().is_empty()
}

/// Parses every record of `text` (the records of zone `origin`): the records that parse, and
/// an error for each entry that does not, so that later checks still see the good ones.
pub fn parse(text: &str, origin: &Name, first_line: usize) -> (Vec<LineRecord>, Vec<RecordError>) {
    let entries = match entries(text, first_line) {
        Ok(e) => e,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut current_origin = origin.clone();
    let mut default_ttl: Option<String> = None;
    let mut last_ttl: Option<u32> = None;
    let mut last_owner: Option<Name> = None;

    for entry in entries {
        if is_blank(entry.text) {
            continue;
        }
        let err = |message: String| RecordError {
            line: entry.line,
            message,
        };
        let trimmed = entry.text.trim_start();
        if let Some(directive) = trimmed.strip_prefix('$') {
            let mut words = directive.split_whitespace();
            let keyword = words.next().unwrap_or("").to_ascii_uppercase();
            let arg = words.next().filter(|w| !w.starts_with(';'));
            match (keyword.as_str(), arg) {
                ("ORIGIN", Some(name)) => match Name::parse(name, Some(&current_origin)) {
                    Ok(n) if n.zone_of(origin) || origin.zone_of(&n) => current_origin = n,
                    Ok(n) => errors.push(err(format!("$ORIGIN {n} is outside the zone {origin}"))),
                    Err(e) => errors.push(err(format!("bad $ORIGIN {name:?}: {e}"))),
                },
                ("TTL", Some(ttl)) => match hickory_proto::serialize::txt::parse_ttl(ttl) {
                    Ok(t) if t <= MAX_TTL => default_ttl = Some(ttl.to_string()),
                    Ok(t) => errors.push(err(format!("$TTL {t} exceeds {MAX_TTL} (RFC 2181 §8)"))),
                    Err(e) => errors.push(err(format!("bad $TTL {ttl:?}: {e}"))),
                },
                ("INCLUDE", _) => errors.push(err(
                    "$INCLUDE is not supported: a zone's records live in its own file".into(),
                )),
                (k @ ("ORIGIN" | "TTL"), None) => errors.push(err(format!("${k} needs a value"))),
                (k, _) => errors.push(err(format!("unknown directive ${k}"))),
            }
            continue;
        }

        let starts_blank = entry.text.starts_with([' ', '\t']);
        let mut prefix = format!("$ORIGIN {current_origin}\n");
        match (&default_ttl, last_ttl) {
            (Some(t), _) => prefix.push_str(&format!("$TTL {t}\n")),
            (None, Some(t)) => prefix.push_str(&format!("$TTL {t}\n")),
            (None, None) => {}
        }
        if starts_blank {
            match &last_owner {
                Some(owner) => prefix.push_str(&owner.to_string()),
                None => {
                    errors.push(err("record has no owner name and none precedes it".into()));
                    continue;
                }
            }
        }
        let source = format!("{prefix}{}\n", entry.text);
        match Parser::new(source, None, Some(current_origin.clone())).parse() {
            Ok((_, sets)) => {
                let parsed: Vec<Record> = sets
                    .into_values()
                    .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>())
                    .collect();
                if let Some(r) = parsed.first() {
                    last_owner = Some(r.name.clone());
                    last_ttl = Some(r.ttl);
                }
                for record in parsed {
                    if record.ttl > MAX_TTL {
                        errors.push(err(format!(
                            "TTL {} exceeds {MAX_TTL} (RFC 2181 §8)",
                            record.ttl
                        )));
                        continue;
                    }
                    records.push(LineRecord {
                        line: entry.line,
                        record,
                    });
                }
            }
            Err(e) => errors.push(err(describe(&e.to_string()))),
        }
    }
    (records, errors)
}

/// The largest TTL a record may carry (RFC 2181 §8: the top bit is zero).
pub const MAX_TTL: u32 = 0x7FFF_FFFF;

/// hickory's messages name its internals ("record ttl not specified"); say it for operators.
fn describe(msg: &str) -> String {
    if msg.contains("ttl not specified") {
        "record has no TTL and no $TTL precedes it".into()
    } else {
        format!("cannot parse record: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    fn ok((records, errors): (Vec<LineRecord>, Vec<RecordError>)) -> Vec<LineRecord> {
        assert!(errors.is_empty(), "{errors:?}");
        records
    }

    fn origin() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    #[test]
    fn multi_line_soa_keeps_its_first_line() {
        let text = "$TTL 300\n\n@ IN SOA ns1 host (\n  1 2 3 4 5 )\nwww IN A 192.0.2.1 ; web\n";
        let recs = ok(parse(text, &origin(), 10));
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].line, 12);
        assert_eq!(recs[0].record.record_type(), RecordType::SOA);
        assert_eq!(recs[1].line, 14);
        assert_eq!(recs[1].record.ttl, 300);
    }

    #[test]
    fn blank_owner_repeats_the_previous_owner_and_last_ttl_carries() {
        let text = "www 60 IN A 192.0.2.1\n    IN AAAA 2001:db8::1\n";
        let recs = ok(parse(text, &origin(), 1));
        assert_eq!(recs[1].record.name.to_ascii(), "www.example.com.");
        assert_eq!(
            recs[1].record.ttl, 60,
            "RFC 1035: omitted TTL is the last one"
        );
    }

    #[test]
    fn origin_directive_moves_relative_names() {
        let text = "$TTL 60\n$ORIGIN sub.example.com.\nhost A 192.0.2.1\n";
        let recs = ok(parse(text, &origin(), 1));
        assert_eq!(recs[0].record.name.to_ascii(), "host.sub.example.com.");
    }

    #[test]
    fn quoted_semicolons_and_parentheses_are_data() {
        let text = "$TTL 60\nt IN TXT \"a;b(c\" \"d)\"\n";
        let recs = ok(parse(text, &origin(), 1));
        assert_eq!(recs.len(), 1);
    }

    #[test]
    fn every_bad_line_is_reported() {
        let text =
            "$TTL 60\nwww IN A 999.0.2.1\nok IN A 192.0.2.1\nmx IN MX ten mail\n$INCLUDE other\n";
        let (good, errs) = parse(text, &origin(), 1);
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4, 5], "{errs:?}");
        assert_eq!(good.len(), 1, "the good record still parses");
    }

    #[test]
    fn missing_ttl_and_unbalanced_parentheses_are_errors() {
        let errs = parse("www IN A 192.0.2.1\n", &origin(), 1).1;
        assert!(errs[0].message.contains("no TTL"), "{errs:?}");
        let errs = parse("$TTL 1\n@ SOA a b (1 2\n3 4 5\n", &origin(), 1).1;
        assert_eq!(errs[0].line, 2);
        let errs = parse("$TTL 1\nwww A 192.0.2.1 )\n", &origin(), 7).1;
        assert_eq!(errs[0].line, 8);
    }

    #[test]
    fn ttl_above_rfc2181_limit_is_refused() {
        let errs = parse("www 2147483648 IN A 192.0.2.1\n", &origin(), 3).1;
        assert_eq!(errs[0].line, 3);
        assert!(errs[0].message.contains("2147483647"), "{errs:?}");
    }
}
