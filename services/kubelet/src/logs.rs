//! Container logs in the CRI format (`<RFC3339Nano> <stream> <P|F> <content>`),
//! as the runtime writes them under /var/log/pods: parsing, `kubectl logs`
//! (tail, since, timestamps, byte limit, follow until the container ends,
//! across rotations), and rotation by size.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

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

#[derive(Debug, thiserror::Error)]
pub enum LogOptionsError {
    #[error("invalid value {value:?} for {param}")]
    Invalid { param: &'static str, value: String },
}

/// `PodLogOptions` as the apiserver passes them in the query string.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    /// Only records at or after this instant.
    pub since: Option<jiff::Timestamp>,
}

impl LogOptions {
    pub fn from_query(query: &str) -> Result<LogOptions, LogOptionsError> {
        let mut o = LogOptions::default();
        let flag = |v: &str| v == "true" || v == "1";
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            let v = percent_decode(v);
            let invalid = |param| LogOptionsError::Invalid { param, value: v.clone() };
            match k {
                "follow" => o.follow = flag(&v),
                "previous" => o.previous = flag(&v),
                "timestamps" => o.timestamps = flag(&v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| invalid("tailLines"))?;
                    o.tail_lines = Some(usize::try_from(n).map_err(|_| invalid("tailLines"))?);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| invalid("limitBytes"))?;
                    o.limit_bytes =
                        Some(usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| invalid("limitBytes"))?);
                }
                "sinceSeconds" => {
                    let n: i64 = v.parse().map_err(|_| invalid("sinceSeconds"))?;
                    if n <= 0 {
                        return Err(invalid("sinceSeconds"));
                    }
                    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(n);
                    o.since = Some(o.since.map_or(since, |s| s.max(since)));
                }
                "sinceTime" => {
                    let t: jiff::Timestamp = v.parse().map_err(|_| invalid("sinceTime"))?;
                    o.since = Some(t);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte offset in `data` where its last `n` records begin.
pub fn tail_offset(data: &[u8], n: usize) -> usize {
    if n == 0 {
        return data.len();
    }
    // A trailing record without its newline is still being written: it counts.
    let end = if data.last() == Some(&b'\n') { data.len() - 1 } else { data.len() };
    let mut seen = 0;
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Turns complete CRI records into `kubectl logs` output.
struct Formatter {
    opts: LogOptions,
    /// Bytes still allowed by limitBytes.
    budget: Option<usize>,
}

impl Formatter {
    fn new(opts: LogOptions) -> Formatter {
        Formatter { budget: opts.limit_bytes, opts }
    }

    fn done(&self) -> bool {
        self.budget == Some(0)
    }

    /// Formats the complete lines of `chunk`; returns the output and how many bytes were consumed.
    fn format(&mut self, chunk: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(chunk.len());
        let mut consumed = 0;
        while let Some(nl) = chunk[consumed..].iter().position(|b| *b == b'\n') {
            let record = &chunk[consumed..consumed + nl];
            consumed += nl + 1;
            let Some(line) = std::str::from_utf8(record).ok().and_then(parse) else { continue };
            if let Some(since) = self.opts.since {
                match line.timestamp.parse::<jiff::Timestamp>() {
                    Ok(t) if t < since => continue,
                    _ => {}
                }
            }
            let start = out.len();
            if self.opts.timestamps {
                out.extend_from_slice(line.timestamp.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(line.content.as_bytes());
            if !line.partial {
                out.push(b'\n');
            }
            if let Some(budget) = self.budget.as_mut() {
                let wrote = out.len() - start;
                if wrote >= *budget {
                    out.truncate(start + *budget);
                    *budget = 0;
                    return (out, consumed);
                }
                *budget -= wrote;
            }
        }
        (out, consumed)
    }
}

/// Whether the container is still running (follow stops once it is not).
pub type StillRunning = Box<dyn FnMut() -> futures::future::BoxFuture<'static, bool> + Send>;

fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

/// Streams the log at `path` per `opts` into `tx`, following it (across
/// rotations) while `running` says the container runs.
pub async fn stream(path: PathBuf, opts: LogOptions, mut running: StillRunning, tx: mpsc::Sender<Bytes>) {
    let follow = opts.follow;
    let mut fmt = Formatter::new(opts.clone());
    let Ok(mut file) = tokio::fs::File::open(&path).await else { return };
    let mut ino = file.metadata().await.map(|m| inode(&m)).unwrap_or(0);
    let mut pending: Vec<u8> = Vec::new();
    if let Some(n) = opts.tail_lines {
        let mut all = Vec::new();
        if file.read_to_end(&mut all).await.is_err() {
            return;
        }
        pending = all.split_off(tail_offset(&all, n));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle_polls = 0u32;
    let mut stopping = false;
    loop {
        if !drain(&mut file, &mut pending, &mut fmt, &tx, &mut buf).await {
            return;
        }
        if !follow || stopping {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        idle_polls += 1;
        // Rotated: the path names a new file once the runtime has reopened it.
        // Until then the runtime kept writing to the old one, so read that to
        // its end before switching; a record left without its newline there
        // can never be completed and is dropped.
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            let pos = file.stream_position().await.unwrap_or(0);
            if inode(&meta) != ino || meta.len() < pos {
                let Ok(new_file) = tokio::fs::File::open(&path).await else { return };
                if inode(&meta) != ino && !drain(&mut file, &mut pending, &mut fmt, &tx, &mut buf).await {
                    return;
                }
                file = new_file;
                ino = inode(&meta);
                pending.clear();
                continue;
            }
        }
        if idle_polls.is_multiple_of(10) && !running().await {
            // One last read for what the container wrote before it ended.
            stopping = true;
        }
    }
}

/// Formats and sends everything readable from `file` now, keeping an
/// incomplete last record in `pending`. False once the stream should end
/// (the receiver left, limitBytes is spent or the file can't be read).
async fn drain(
    file: &mut tokio::fs::File,
    pending: &mut Vec<u8>,
    fmt: &mut Formatter,
    tx: &mpsc::Sender<Bytes>,
    buf: &mut [u8],
) -> bool {
    loop {
        let (out, used) = fmt.format(pending);
        pending.drain(..used);
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return false;
        }
        if fmt.done() {
            return false;
        }
        match file.read(buf).await {
            Ok(0) => return true,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => return false,
        }
    }
}

/// Rotation settings (`--container-log-max-size`, `--container-log-max-files`).
#[derive(Clone, Debug)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: usize,
}

/// Parses a Kubernetes quantity such as `10Mi`, `500Ki` or `1G` into bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" | "K" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Rotates one container's log if it outgrew `max_size`: renames it to
/// `<log>.<timestamp>`, asks the runtime to reopen it, and keeps at most
/// `max_files` files (the live one included). Returns whether it rotated.
pub async fn rotate_if_needed(
    runtime: &crate::cri::Runtime,
    container_id: &str,
    log: &Path,
    r: &Rotation,
) -> Result<bool, crate::cri::CriError> {
    let Ok(meta) = tokio::fs::metadata(log).await else { return Ok(false) };
    if meta.len() < r.max_size || r.max_size == 0 {
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S%.f").to_string();
    let rotated = PathBuf::from(format!("{}.{stamp}", log.display()));
    if tokio::fs::rename(log, &rotated).await.is_err() {
        return Ok(false);
    }
    if let Err(e) = runtime.reopen_container_log(container_id).await {
        // The container may have stopped meanwhile: put the log back.
        let _ = tokio::fs::rename(&rotated, log).await;
        return Err(e);
    }
    // Old rotated files beyond the limit go, oldest first.
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().map(|n| n.to_string_lossy().into_owned())) else {
        return Ok(true);
    };
    let mut old: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}."))))
        .collect();
    old.sort();
    let keep = r.max_files.saturating_sub(1).max(1);
    while old.len() > keep {
        let p = old.remove(0);
        let _ = tokio::fs::remove_file(&p).await;
    }
    Ok(true)
}

/// Checks every running container's log every 10 seconds and rotates it past its size.
pub async fn rotate_loop(runtime: crate::cri::Runtime, rotation: Rotation) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let Ok(containers) = runtime.list_containers().await else { continue };
        for c in containers.into_iter().filter(|c| c.state == crate::cri::ContainerState::ContainerRunning as i32) {
            let Ok(Some(status)) = runtime.container_status(&c.id).await else { continue };
            if status.log_path.is_empty() {
                continue;
            }
            if let Err(e) = rotate_if_needed(&runtime, &c.id, Path::new(&status.log_path), &rotation).await {
                tracing::warn!(container = %c.id, error = %e, "rotating the container log");
            }
        }
    }
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

    const LOG: &str = "2024-01-01T00:00:01.000000001Z stdout F one\n\
                       2024-01-01T00:00:02.000000002Z stderr F two\n\
                       2024-01-01T00:00:03.000000003Z stdout P thr\n\
                       2024-01-01T00:00:03.500000000Z stdout F ee\n";

    #[test]
    fn options_come_from_the_query() {
        let o = LogOptions::from_query(
            "follow=true&tailLines=3&timestamps=1&limitBytes=10&sinceTime=2024-01-01T00%3A00%3A02Z",
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(3), Some(10)));
        assert_eq!(o.since.unwrap().to_string(), "2024-01-01T00:00:02Z");
        let before = jiff::Timestamp::now();
        let o = LogOptions::from_query("sinceSeconds=30").unwrap();
        let since = o.since.unwrap();
        let ago = before.duration_since(since).as_secs_f64();
        assert!((29.0..=31.0).contains(&ago), "sinceSeconds=30 starts {ago} s back");
        assert!(LogOptions::from_query("sinceSeconds=0").is_err());
        assert!(LogOptions::from_query("tailLines=x").is_err());
        assert!(LogOptions::from_query("limitBytes=0").is_err());
    }

    #[test]
    fn records_become_lines_with_partials_joined() {
        let mut f = Formatter::new(LogOptions::default());
        let (out, used) = f.format(LOG.as_bytes());
        assert_eq!(used, LOG.len());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntwo\nthree\n");
        // An unterminated record waits for its newline.
        let (out, used) = f.format(b"2024-01-01T00:00:04Z stdout F fo");
        assert!(out.is_empty() && used == 0);
    }

    #[test]
    fn timestamps_since_and_limit() {
        let opts = LogOptions { timestamps: true, ..Default::default() };
        let (out, _) = Formatter::new(opts).format(LOG.as_bytes());
        assert!(String::from_utf8(out).unwrap().starts_with("2024-01-01T00:00:01.000000001Z one\n"));
        let opts = LogOptions { since: Some("2024-01-01T00:00:02Z".parse().unwrap()), ..Default::default() };
        let (out, _) = Formatter::new(opts).format(LOG.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), "two\nthree\n");
        let opts = LogOptions { limit_bytes: Some(6), ..Default::default() };
        let mut f = Formatter::new(opts);
        let (out, _) = f.format(LOG.as_bytes());
        assert_eq!(String::from_utf8(out).unwrap(), "one\ntw");
        assert!(f.done());
    }

    #[test]
    fn tail_counts_records_from_the_end() {
        let d = LOG.as_bytes();
        assert_eq!(&LOG[tail_offset(d, 1)..], "2024-01-01T00:00:03.500000000Z stdout F ee\n");
        assert_eq!(tail_offset(d, 4), 0);
        assert_eq!(tail_offset(d, 10), 0);
        assert_eq!(tail_offset(d, 0), d.len());
    }

    #[test]
    fn sizes_parse_as_quantities() {
        assert_eq!(parse_size("10Mi"), Some(10 << 20));
        assert_eq!(parse_size("500Ki"), Some(500 << 10));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("1x"), None);
    }

    #[tokio::test]
    async fn follow_ends_when_the_container_ends_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:01Z stdout F a\n").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let r = running.clone();
        let still: StillRunning = Box::new(move || {
            let r = r.clone();
            Box::pin(async move { r.load(std::sync::atomic::Ordering::SeqCst) })
        });
        let opts = LogOptions { follow: true, ..Default::default() };
        let task = tokio::spawn(stream(path.clone(), opts, still, tx));
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"a\n"));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"2024-01-01T00:00:02Z stdout F b\n").unwrap();
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"b\n"));
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        // The runtime writes to the renamed file until it reopens the path.
        f.write_all(b"2024-01-01T00:00:03Z stdout F b2\n").unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        f.write_all(b"2024-01-01T00:00:03Z stdout F b3\n").unwrap();
        std::fs::write(&path, "2024-01-01T00:00:04Z stdout F c\n").unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"c\n") {
            seen.extend_from_slice(&rx.recv().await.unwrap());
        }
        assert_eq!(String::from_utf8(seen).unwrap(), "b2\nb3\nc\n");
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        assert!(rx.recv().await.is_none());
    }
}
