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

/// The content of a `<file>.sha256` checksum file for `bytes`: their lower-case hex SHA-256 and a
/// newline (the registry's `manifest.json.sha256`, the file store's `meta.json.sha256`).
pub fn sha256_line(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut line: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    line.push('\n');
    line
}

/// Checks `bytes`, read from `path`, against the checksum file `sum_path` ([`sha256_line`]):
/// [`Error::Corrupt`] naming `path` on a mismatch. A missing checksum file passes (files written
/// before checksum files existed are read unchecked).
pub fn check_sha256_file(path: &Path, bytes: &[u8], sum_path: &Path) -> Result<()> {
    match fs::read_to_string(sum_path) {
        Ok(want) => {
            let got = sha256_line(bytes);
            if want.trim() != got.trim() {
                let name = sum_path.file_name().unwrap_or_default().to_string_lossy();
                return Err(Error::corrupt(
                    path.display(),
                    format!(
                        "checksum mismatch: {name} records sha256 {}, the file has {}",
                        want.trim(),
                        got.trim()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(sum_path)(e)),
    }
}

/// How old a leftover temporary entry must be before [`sweep_stale`] removes it where another
/// writer may still be using it (the registry, the file store): one hour, longer than any write
/// of one file or one registry publish takes.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Whether `name` is one of the project's temporary names: `.NAME.tmp-TOKEN` ([`temp_path`]),
/// `.tmp-TOKEN` (a registry publish), `.staging-TOKEN` (training's staging directory) or
/// `.del-TOKEN` (a directory renamed away to be deleted).
pub fn is_temporary_name(name: &str) -> bool {
    name.starts_with('.') && (name.contains(".tmp-") || name.starts_with(".staging-") || name.starts_with(".del-"))
}

/// What [`sweep_stale`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Files and directories removed.
    pub entries: u64,
    /// Their bytes (directories counted with their files).
    pub bytes: u64,
}

/// Removes the temporary files and directories ([`is_temporary_name`]) directly in `dir` whose
/// last modification is at least `older_than` ago: what a killed writer (`kill -9`, a lost machine)
/// left behind, since a writer that fails normally removes its own. Pass [`STALE_AFTER`] where
/// another writer may be working in `dir` at the same time, and zero where the caller holds the
/// directory's writer lock. Best effort: an entry that cannot be removed stays for the next sweep;
/// a missing `dir` is nothing to sweep.
pub fn sweep_stale(dir: &Path, older_than: std::time::Duration) -> Result<Swept> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Swept::default()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    let now = std::time::SystemTime::now();
    let mut swept = Swept::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !is_temporary_name(&name.to_string_lossy()) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < older_than {
            continue;
        }
        let path = entry.path();
        let (removed, bytes) = if meta.is_dir() {
            let bytes = dir_bytes(&path);
            (fs::remove_dir_all(&path).is_ok(), bytes)
        } else {
            (fs::remove_file(&path).is_ok(), meta.len())
        };
        if removed {
            swept.entries += 1;
            swept.bytes += bytes;
        }
    }
    Ok(swept)
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
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

    #[test]
    fn sweeping_removes_old_temporary_entries_only() {
        use std::time::{Duration, SystemTime};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old = SystemTime::now() - Duration::from_secs(7_200);
        let age = |p: &Path| {
            File::options().write(true).open(p).unwrap().set_modified(old).unwrap();
        };
        // Old leftovers of each kind, a fresh temporary file, and files that are not temporary.
        fs::write(d.join(".items.parquet.tmp-abc"), b"12345").unwrap();
        age(&d.join(".items.parquet.tmp-abc"));
        fs::create_dir(d.join(".staging-1f")).unwrap();
        fs::write(d.join(".staging-1f").join("model.bin"), b"1234567").unwrap();
        fs::create_dir(d.join(".tmp-2e")).unwrap();
        fs::write(d.join(".fresh.tmp-3d"), b"x").unwrap();
        fs::write(d.join("items.parquet"), b"keep").unwrap();
        age(&d.join("items.parquet"));
        fs::write(d.join(".hidden"), b"keep").unwrap();
        age(&d.join(".hidden"));
        // Writing into the directories made their times fresh: only a zero threshold takes them.
        let swept = sweep_stale(d, STALE_AFTER).unwrap();
        assert_eq!(swept, Swept { entries: 1, bytes: 5 });
        let swept = sweep_stale(d, Duration::ZERO).unwrap();
        assert_eq!(
            swept.entries, 3,
            "the staging and publish directories and the fresh file"
        );
        assert_eq!(swept.bytes, 8);
        let mut left: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".hidden", "items.parquet"]);
        assert_eq!(
            sweep_stale(&d.join("missing"), Duration::ZERO).unwrap(),
            Swept::default()
        );
        assert!(is_temporary_name(".del-00ff") && !is_temporary_name("tmp-1") && !is_temporary_name(".x"));
    }
}
