//! Where a region's load is scraped from: a Prometheus endpoint and one gauge on it
//! (`load-from = { url = "http://...", metric = 'name{label="value"}' }`), and the small
//! reader of the Prometheus text format that finds that gauge. PURE: the control loop
//! (`crate::spill`) fetches the page.
//!
//! The rule: the selector names one metric and some of its labels; the first sample of that
//! metric whose labels include them all is the load. Anything the reader does not follow
//! (a line that is not `name{labels} value`) is skipped, never an error.

/// A region's load source, checked by the zone loader.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSource {
    pub url: String,
    pub metric: Selector,
}

/// A metric name and the labels a sample must carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name` or `name{label="value",...}`, as in a PromQL instant selector with `=` matchers.
pub fn parse_selector(text: &str) -> Result<Selector, String> {
    let text = text.trim();
    let (name, rest) = match text.find('{') {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    if !is_name(name) {
        return Err(format!(
            "metric {text:?}: give a metric name (letters, digits, '_' and ':'), then labels \
             in braces if any: name{{label=\"value\"}}"
        ));
    }
    let labels = match rest {
        None => Vec::new(),
        Some(braced) => {
            let inner = braced
                .strip_prefix('{')
                .and_then(|b| b.strip_suffix('}'))
                .ok_or_else(|| format!("metric {text:?}: labels end with '}}'"))?;
            labels(inner).ok_or_else(|| {
                format!("metric {text:?}: labels are label=\"value\", separated by commas")
            })?
        }
    };
    Ok(Selector {
        name: name.to_string(),
        labels,
    })
}

/// `a="x",b="y"` (a trailing comma allowed; `\"` and `\\` escapes); `None` if malformed.
fn labels(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if !is_name(key) {
            return None;
        }
        let rest = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        s = rest[end + 1..].trim_start();
        match s.strip_prefix(',') {
            Some(r) => s = r,
            None if s.is_empty() => return Some(out),
            None => return None,
        }
    }
}

/// The value of the first sample in a Prometheus text page that `selector` selects.
pub fn gauge(page: &str, selector: &Selector) -> Option<f64> {
    page.lines().find_map(|line| {
        let line = line.trim();
        if line.starts_with('#') {
            return None;
        }
        let rest = line.strip_prefix(selector.name.as_str())?;
        let (labels_text, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let close = r.rfind('}')?;
                (&r[..close], &r[close + 1..])
            }
            // Another metric whose name starts with this one's.
            None if !rest.starts_with([' ', '\t']) => return None,
            None => ("", rest),
        };
        let have = labels(labels_text)?;
        if !selector.labels.iter().all(|l| have.contains(l)) {
            return None;
        }
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        value.is_finite().then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP frontend_qps Queries a second.\n# TYPE frontend_qps gauge\n\
        frontend_qps_total 9\n\
        frontend_qps{region=\"us-east\",pod=\"a\"} 1200.5\n\
        frontend_qps{region=\"eu-west\",pod=\"b\"} 3000 1700000000000\n\
        up 1\n";

    #[test]
    fn finds_the_sample_whose_labels_include_the_selectors() {
        let s = parse_selector("frontend_qps{region=\"eu-west\"}").unwrap();
        assert_eq!(gauge(PAGE, &s), Some(3000.0));
        let s = parse_selector("frontend_qps{region=\"us-east\", pod=\"a\",}").unwrap();
        assert_eq!(gauge(PAGE, &s), Some(1200.5));
        assert_eq!(gauge(PAGE, &parse_selector("up").unwrap()), Some(1.0));
        // A longer name is another metric.
        assert_eq!(
            gauge(PAGE, &parse_selector("frontend_qps").unwrap()),
            Some(1200.5)
        );
        assert_eq!(gauge(PAGE, &parse_selector("frontend").unwrap()), None);
        let s = parse_selector("frontend_qps{region=\"ap\"}").unwrap();
        assert_eq!(gauge(PAGE, &s), None);
        assert_eq!(s.to_string(), "frontend_qps{region=\"ap\"}");
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for bad in [
            "",
            "9qps",
            "qps{region=eu}",
            "qps{region=\"eu\"",
            "qps{=\"x\"}",
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?}");
        }
    }
}
