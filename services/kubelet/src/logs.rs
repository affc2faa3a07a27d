//! Container logs in the CRI format (`<RFC3339Nano> <stream> <P|F> <content>`),
//! as the runtime writes them under /var/log/pods.

/// One parsed log line.
#[derive(Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    /// A partial line (`P`) continues in the next record.
    pub partial: bool,
    pub content: &'a str,
}

pub fn parse(line: &str) -> Option<Line<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some(Line { timestamp, stream, partial: tag.split(':').next() == Some("P"), content })
}

/// The last `lines` lines of a container's log as plain text (for `FallbackToLogsOnError`).
pub fn tail_text(path: &str, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for l in text.lines().filter_map(parse) {
        current.push_str(l.content);
        if !l.partial {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    let start = out.len().saturating_sub(lines);
    out[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cri_lines() {
        let l = parse("2016-10-06T00:17:09.669794202Z stdout P hello ").unwrap();
        assert_eq!(l.stream, "stdout");
        assert!(l.partial);
        assert_eq!(l.content, "hello ");
        let l = parse("2016-10-06T00:17:09.669794202Z stderr F").unwrap();
        assert_eq!(l.content, "");
        assert!(!l.partial);
    }
}
