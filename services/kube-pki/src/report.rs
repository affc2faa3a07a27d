//! What a run did to each file it is responsible for.

use std::fmt;
use std::path::{Path, PathBuf};

/// One line per file, in the order they were handled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Report {
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the directory when under it.
    pub path: PathBuf,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// There was no file; one was written.
    Created,
    /// The file fits and was left as it was.
    Kept,
    /// The file was kept, but others could read it; its mode is now owner-only.
    Restricted { from: u32 },
    /// The file was rewritten, for the reason given.
    Replaced { reason: String },
}

impl Report {
    pub(crate) fn push(&mut self, path: impl Into<PathBuf>, action: Action) {
        self.entries.push(Entry { path: path.into(), action });
    }

    /// What was done to `path` (as reported: relative to the directory).
    pub fn action(&self, path: impl AsRef<Path>) -> Option<&Action> {
        self.entries.iter().find(|e| e.path == path.as_ref()).map(|e| &e.action)
    }

    /// Whether anything was written or changed.
    pub fn changed(&self) -> bool {
        self.entries.iter().any(|e| e.action != Action::Kept)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            let path = entry.path.display();
            match &entry.action {
                Action::Created => writeln!(f, "created   {path}")?,
                Action::Kept => writeln!(f, "kept      {path}")?,
                Action::Restricted { from } => writeln!(f, "kept      {path} (mode {from:o} narrowed to 600)")?,
                Action::Replaced { reason } => writeln!(f, "replaced  {path} ({reason})")?,
            }
        }
        Ok(())
    }
}
