//! File helpers shared by every layer that writes: atomic writes and temp-file hygiene.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The marker in every temporary name: `<name>.tmp-<pid>-<counter>`.
pub(crate) const TEMP_MARKER: &str = ".tmp-";

/// A suffix no other writer in this or another process uses at the same time.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{n}-{nanos:08x}", std::process::id())
}

/// The temporary path a write to `path` goes through.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(TEMP_MARKER);
    name.push(unique_suffix());
    path.with_file_name(name)
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a
/// part: the bytes go to a temporary file in the same folder, which is then renamed over `path`.
/// On failure the temporary file is removed. No fsync: a crash may lose the new file but never
/// leaves a torn one under `path` (readers of cached data check contents anyway).
///
/// # Errors
/// [`Error::Io`] naming the file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming into place", path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `name` is a temporary file or folder (see [`temp_path`]) whose writer is gone: its
/// process no longer exists (known where `/proc` is mounted), or it is older than `max_age`
/// (`None`: never judged by age; a pid may be reused after a restart).
pub(crate) fn is_stale_temp(path: &Path, max_age: Option<std::time::Duration>) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let Some(at) = name.find(TEMP_MARKER) else {
        return false;
    };
    let pid = name[at + TEMP_MARKER.len()..]
        .split('-')
        .next()
        .unwrap_or_default();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let proc_dir = Path::new("/proc");
    if proc_dir.join("self").exists() && !proc_dir.join(pid).exists() {
        return true;
    }
    max_age.is_some_and(|age| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed > age)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temp_of_a_dead_process_is_stale_and_ours_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let ours = temp_path(&dir.path().join("a.blob"));
        std::fs::write(&ours, b"x").unwrap();
        assert!(!is_stale_temp(&ours, None));
        // Pids are below 2^22 on Linux.
        let dead = dir.path().join("a.blob.tmp-99999999-0-0");
        assert!(is_stale_temp(&dead, None));
        assert!(!is_stale_temp(&dir.path().join("a.blob"), None));
        assert!(!is_stale_temp(&dir.path().join("a.tmp-x"), None));
    }

    #[test]
    fn failed_atomic_write_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("a.bin");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
