//! Files are written whole: a temporary file beside the target, given its final mode before any
//! byte goes in, synced, then renamed over the target. A crash leaves the old file or the new one,
//! never a torn key, and a key is never readable by others, not even for a moment.

use std::fs::{self, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// Private keys and kubeconfigs (which embed one).
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Certificates and public keys.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// The file's text, or `None` if there is no file.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

pub(crate) fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    file.as_file().set_permissions(Permissions::from_mode(mode)).map_err(io(path))?;
    file.write_all(contents).map_err(io(path))?;
    file.as_file().sync_all().map_err(io(path))?;
    file.persist(path).map_err(|e| io(path)(e.error))?;
    Ok(())
}

/// Takes group and other access away from a kept secret. Returns the old mode if it changed.
pub(crate) fn restrict(path: &Path) -> Result<Option<u32>, Error> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, Permissions::from_mode(mode & 0o700)).map_err(io(path))?;
    Ok(Some(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_sets_the_mode_and_replaces_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/key");
        write(&path, b"one", SECRET_MODE).unwrap();
        assert_eq!(mode(&path), 0o600);
        write(&path, b"two", PUBLIC_MODE).unwrap();
        assert_eq!(mode(&path), 0o644);
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("two"));
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file is left");
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn restrict_takes_away_group_and_other_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, b"k", 0o640).unwrap();
        assert_eq!(restrict(&path).unwrap(), Some(0o640));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(restrict(&path).unwrap(), None);
    }
}
