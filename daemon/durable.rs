//! durable: files that survive a crash or a power cut, written one way.
//!
//! Every state file mfawatch writes (the snapshot, history parts and days,
//! `_committed`, dead letters, the alert log) goes through here: created
//! 0600 and folders 0700 whatever the umask (they hold user names and IPs),
//! written to a temporary name, fsynced, renamed into place, and the folder
//! fsynced so that the new name itself is durable. This module knows no
//! stage and is used by all of them.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Files mfawatch writes hold user names and IPs: no one else reads them.
pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Makes a directory entry (a new or renamed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents (0700), fsyncing each parent so
/// that the new directories survive a power cut.
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Creates (or truncates) `path` for writing, 0600 whatever the umask.
pub fn create_private(path: &Path) -> io::Result<File> {
    File::options().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)
}

/// Opens `path` to append, creating it 0600 (with its folder) and making
/// its entry in the folder durable when it is new.
pub fn open_append(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durable(parent)?;
    }
    let new = !path.exists();
    let file = File::options().create(true).append(true).mode(FILE_MODE).open(path)?;
    if new {
        file.sync_all()?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(file)
}

/// Writes `bytes` to `path` atomically and durably: a temporary file beside
/// it, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_name(path);
    {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    rename_durable(&tmp, path)
}

/// Renames `from` over `to` and fsyncs the directory.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// `name.tmp` beside `path`.
pub fn tmp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn new_directories_are_created_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_durable(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durable(&deep).unwrap();
    }

    #[test]
    fn files_and_folders_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // SAFETY: umask only changes this process's creation mask; the test restores it.
        let old = unsafe { libc::umask(0o022) };
        let folder = dir.path().join("state/history");
        create_dir_durable(&folder).unwrap();
        write_atomic(&folder.join("a"), b"x").unwrap();
        let log = open_append(&dir.path().join("log/alerts.ndjson")).unwrap();
        drop(log);
        unsafe { libc::umask(old) };
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&folder.join("a")), 0o600);
        assert_eq!(mode(&dir.path().join("log/alerts.ndjson")), 0o600);
    }
}
