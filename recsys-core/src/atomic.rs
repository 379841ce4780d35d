//! Atomic file writes and unique names, the one implementation every crate of the project uses
//! (models, vocabularies, candidate stores, datasets, manifests, registry pointers, canary state).
//!
//! [`write_atomic`] fills a temporary file beside the target ([`temp_path`]), flushes and syncs it,
//! then renames it over the target: a reader sees the old file or the new one, never half of one,
//! and a failed write removes its temporary file.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("CURRENT.json");
//! recsys_core::atomic::write_bytes_atomic(&path, b"{\"version\": \"1.0.0\"}")?;
//! assert_eq!(std::fs::read(&path)?, b"{\"version\": \"1.0.0\"}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A token unique within the machine for the life of the process and across processes (hex of
/// the wall-clock nanoseconds, the process id and a counter), for temporary and part-file names.
pub fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:04x}{n:x}", nanos, std::process::id() & 0xffff)
}

/// The temporary file a write of `path` goes through: `.NAME.tmp-TOKEN` in the same directory (so
/// the rename stays on one file system).
pub fn temp_path(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    dir.join(format!(".{name}.tmp-{}", unique_token()))
}

/// Writes `path` atomically: creates its directory when missing, lets `write` fill a temporary
/// file beside it, flushes and syncs it, and renames it over `path`. On any error the temporary
/// file is removed and `path` is untouched. Generic over the caller's error type, which must
/// take this crate's [`Error`] (I/O failures are [`Error::Io`] naming the file).
pub fn write_atomic<E: From<Error>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let tmp = temp_path(path);
    if let Some(dir) = tmp.parent() {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let result = (|| {
        let mut f = File::create(&tmp).map_err(Error::io(&tmp))?;
        write(&mut f)?;
        f.flush().map_err(Error::io(&tmp))?;
        f.sync_all().map_err(Error::io(&tmp))?;
        fs::rename(&tmp, path).map_err(Error::io(path))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] of a byte string.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| f.write_all(bytes).map_err(Error::io(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_a_failed_write_leaves_nothing() {
        let a: std::collections::BTreeSet<String> = (0..1000).map(|_| unique_token()).collect();
        assert_eq!(a.len(), 1000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("x.json");
        write_bytes_atomic(&path, b"old").unwrap();
        let err = write_atomic(&path, |f| {
            f.write_all(b"half").map_err(Error::io(&path))?;
            Err(Error::Internal("stopped".into()))
        })
        .unwrap_err();
        assert!(err.to_string().contains("stopped"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.json"]);
        assert!(
            temp_path(&path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".x.json.tmp-")
        );
    }
}
