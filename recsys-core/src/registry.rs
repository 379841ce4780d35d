//! The model-version format: the versioned registry that training writes and serving reads.
//!
//! A model-agnostic store of trained artifacts with semantic versions, following the ADR ("store with
//! semantic versioning; keep the last 10 versions for rollback"):
//!
//! ```text
//! REG/<version>/                 one directory per version (e.g. REG/1.0.3/): the artifact files + manifest.json
//! REG/<version>/manifest.json    {version, created_at_ms, files: {name: {sha256, bytes}}, metrics, info}
//! REG/<version>/manifest.json.sha256  the sha256 of manifest.json
//! REG/CURRENT.json               {"version": "1.0.3", "promoted_at_ms": .., "history": ["1.0.1", "1.0.2"]}
//! ```
//!
//! Readers never see a half-written state: [`Registry::publish`] fills a hidden `REG/.tmp-*` directory and
//! renames the complete directory into place, [`Registry::promote`] and [`Registry::rollback`] replace
//! `CURRENT.json` by renaming a complete file over it, and [`Registry::prune`] renames a version away
//! before deleting it. Any number of readers may run beside one writer; mutations (publish with an
//! automatic version, promote, rollback, prune) are meant to come from one process at a time.
//!
//! ```no_run
//! use recsys_core::registry::Registry;
//! use std::collections::BTreeMap;
//! use std::path::Path;
//!
//! let reg = Registry::open("out/registry")?;
//! let metrics = BTreeMap::from([("auc".to_string(), 0.86), ("ndcg@20".to_string(), 0.71)]);
//! let version = reg.publish(Path::new("out/model"), None, &metrics, serde_json::json!({"model": "two-tower"}))?;
//! reg.promote(&version)?;
//! let current = reg.current()?; // Some("1.0.0")
//! # Ok::<(), recsys_core::Error>(())
//! ```

use crate::atomic::{unique_token, write_atomic};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File name of a version's manifest inside its directory.
pub const MANIFEST: &str = "manifest.json";
/// `REG/<version>/manifest.json.sha256`: the lower-case hex SHA-256 of the manifest's bytes. The
/// manifest checks the other files, this checks the manifest (a changed metric or file entry is
/// refused). Versions published before it existed have none and are read unchecked.
pub const MANIFEST_SUM: &str = "manifest.json.sha256";
/// File name of the pointer to the promoted version inside the registry directory.
pub const CURRENT: &str = "CURRENT.json";
/// How many versions [`Registry::prune`] keeps by default (the ADR's "last 10 versions").
pub const DEFAULT_KEEP: usize = 10;
/// Prefix of the registry's temporary directories (unfinished publishes, versions being deleted).
const TMP_PREFIX: &str = ".tmp-";

/// Checksum and size of one artifact file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// `REG/<version>/manifest.json`: what a version holds and how it scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionManifest {
    /// The semantic version, e.g. `1.0.3`.
    pub version: String,
    /// Publication time (ms since the Unix epoch, UTC).
    pub created_at_ms: i64,
    /// Artifact files by name, with their checksums.
    pub files: BTreeMap<String, FileEntry>,
    /// Evaluation metrics of the model (e.g. `auc`, `ndcg@20`).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Free-form description (model kind, training parameters, data set...).
    #[serde(default)]
    pub info: serde_json::Value,
}

/// One line of [`Registry::list`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// The semantic version.
    pub version: String,
    /// Publication time (ms since the Unix epoch, UTC).
    pub created_at_ms: i64,
    /// Evaluation metrics recorded at publication.
    pub metrics: BTreeMap<String, f64>,
    /// Whether this is the promoted version.
    pub current: bool,
}

/// `REG/CURRENT.json`: the promoted version and the ones promoted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentState {
    /// The promoted version.
    pub version: String,
    /// When it was promoted (ms since the Unix epoch, UTC).
    pub promoted_at_ms: i64,
    /// Previously promoted versions, oldest first: the targets of [`Registry::rollback`].
    #[serde(default)]
    pub history: Vec<String>,
}

/// A registry directory; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// Parses a version (an optional leading `v` is accepted) into its canonical semver text; anything
/// else (a path, `..`, an empty string) is a user error naming `version`.
pub fn parse_version(version: &str) -> Result<semver::Version> {
    let text = version.strip_prefix('v').unwrap_or(version);
    semver::Version::parse(text).map_err(|e| Error::invalid("version", version, format!("not a semantic version: {e}")))
}

fn now_ms() -> i64 {
    crate::store::now_ms()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// Streams `src` through SHA-256, also writing it to `dst` when given.
fn hash_stream(path: &Path, mut src: impl Read, mut dst: Option<(&Path, &mut File)>) -> Result<FileEntry> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path)(e)),
        };
        hasher.update(&buf[..n]);
        if let Some((dst_path, f)) = dst.as_mut() {
            f.write_all(&buf[..n]).map_err(Error::io(*dst_path))?;
        }
        bytes += n as u64;
    }
    Ok(FileEntry {
        sha256: hex(&hasher.finalize()),
        bytes,
    })
}

/// Flushes a directory's entries (new names, renames) to disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).map_err(Error::io(dir))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(e.to_string()))?;
    v.push(b'\n');
    Ok(v)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = to_json(value)?;
    write_atomic(path, |f| f.write_all(&bytes).map_err(Error::io(path)))
}

impl Registry {
    /// Opens the registry in `root`, creating the directory when missing.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root).map_err(Error::io(&root))?;
        if !root.is_dir() {
            return Err(Error::invalid("registry", root.display(), "not a directory"));
        }
        Ok(Registry { root })
    }

    /// The registry directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `version`, canonicalised (not checked to exist). Anything that is not a
    /// semantic version (`../x`, an absolute path, a NUL byte) is refused, naming `version`: a
    /// version name is never joined raw into a path.
    pub fn path_of(&self, version: &str) -> Result<PathBuf> {
        Ok(self.root.join(parse_version(version)?.to_string()))
    }

    /// The published versions (directory names that parse as semver), in ascending semver order.
    fn versions(&self) -> Result<Vec<semver::Version>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root).map_err(Error::io(&self.root))? {
            let entry = entry.map_err(Error::io(&self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            match semver::Version::parse(&name) {
                Ok(v) if v.to_string() == name => out.push(v),
                _ => {}
            }
        }
        out.sort();
        Ok(out)
    }

    /// The version the next automatic [`publish`](Self::publish) takes: `1.0.0` for an empty registry,
    /// otherwise the highest published version with its patch number bumped.
    pub fn next_version(&self) -> Result<String> {
        Ok(match self.versions()?.pop() {
            None => "1.0.0".to_string(),
            Some(v) => semver::Version::new(v.major, v.minor, v.patch + 1).to_string(),
        })
    }

    /// Publishes the files of `staging` (a directory the caller filled; flat, regular files) as `version`
    /// (`next_version()` when `None`): copies them into `REG/.tmp-<token>/`, records their checksums in
    /// `manifest.json` with `metrics` and `info`, syncs, then renames the directory to `REG/<version>/`,
    /// so the version appears complete or not at all. Returns the version. An existing version is
    /// refused; `staging` is left as it was. Publishing does not promote.
    pub fn publish(
        &self,
        staging: &Path,
        version: Option<&str>,
        metrics: &BTreeMap<String, f64>,
        info: serde_json::Value,
    ) -> Result<String> {
        let requested = version.map(parse_version).transpose()?.map(|v| v.to_string());
        if let Some(v) = &requested {
            self.refuse_existing(v)?;
        }
        if let Some((name, value)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(
                "metrics",
                format!("{name}={value}"),
                "metric values must be finite",
            ));
        }
        let sources = staged_files(staging)?;
        // Publishes and staging directories of killed trainers (an hour old or more: a concurrent
        // publisher's own are younger).
        let _ = crate::atomic::sweep_stale(&self.root, crate::atomic::STALE_AFTER);

        let tmp = self.root.join(format!("{TMP_PREFIX}{}", unique_token()));
        fs::create_dir(&tmp).map_err(Error::io(&tmp))?;
        let result = self.publish_into(&tmp, &sources, requested, metrics, info);
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn refuse_existing(&self, version: &str) -> Result<()> {
        if fs::symlink_metadata(self.root.join(version)).is_ok() {
            return Err(Error::invalid(
                "version",
                version,
                format!("already published in {} (versions are immutable)", self.root.display()),
            ));
        }
        Ok(())
    }

    fn publish_into(
        &self,
        tmp: &Path,
        sources: &[(String, PathBuf)],
        requested: Option<String>,
        metrics: &BTreeMap<String, f64>,
        info: serde_json::Value,
    ) -> Result<String> {
        let mut files = BTreeMap::new();
        for (name, src) in sources {
            let dst = tmp.join(name);
            let input = File::open(src).map_err(Error::io(src))?;
            let mut out = File::create(&dst).map_err(Error::io(&dst))?;
            let entry = hash_stream(src, input, Some((&dst, &mut out)))?;
            out.sync_all().map_err(Error::io(&dst))?;
            files.insert(name.clone(), entry);
        }
        let mut manifest = VersionManifest {
            version: String::new(),
            created_at_ms: now_ms(),
            files,
            metrics: metrics.clone(),
            info,
        };
        // An automatic version may be taken by a concurrent publisher between choosing and renaming:
        // choose again (a few times) rather than fail.
        let attempts = if requested.is_some() { 1 } else { 5 };
        for attempt in 1..=attempts {
            let version = match &requested {
                Some(v) => v.clone(),
                None => self.next_version()?,
            };
            self.refuse_existing(&version)?;
            manifest.version = version.clone();
            let bytes = to_json(&manifest)?;
            let mpath = tmp.join(MANIFEST);
            write_atomic(&mpath, |f| f.write_all(&bytes).map_err(Error::io(&mpath)))?;
            let spath = tmp.join(MANIFEST_SUM);
            let sum = crate::atomic::sha256_line(&bytes);
            write_atomic(&spath, |f| f.write_all(sum.as_bytes()).map_err(Error::io(&spath)))?;
            sync_dir(tmp)?;
            let target = self.root.join(&version);
            match fs::rename(tmp, &target) {
                Ok(()) => {
                    sync_dir(&self.root)?;
                    return Ok(version);
                }
                Err(_) if target.exists() && attempt < attempts => continue,
                Err(e) if !target.exists() => return Err(Error::io(&target)(e)),
                Err(_) => {}
            }
        }
        let version = manifest.version;
        Err(Error::invalid(
            "version",
            &version,
            format!("already published in {} (versions are immutable)", self.root.display()),
        ))
    }

    /// The manifest of `version`; an unknown version is an [`Error::InvalidInput`] naming it.
    pub fn manifest(&self, version: &str) -> Result<VersionManifest> {
        let v = parse_version(version)?.to_string();
        let dir = self.root.join(&v);
        if !dir.is_dir() {
            return Err(Error::invalid(
                "version",
                version,
                format!("no such version in registry {}", self.root.display()),
            ));
        }
        let path = dir.join(MANIFEST);
        let text = fs::read(&path).map_err(Error::io(&path))?;
        crate::atomic::check_sha256_file(&path, &text, &dir.join(MANIFEST_SUM))?;
        let manifest: VersionManifest = serde_json::from_slice(&text)
            .map_err(|e| Error::corrupt(path.display(), format!("not a version manifest: {e}")))?;
        if manifest.version != v {
            return Err(Error::corrupt(
                path.display(),
                format!("manifest names version {} but lives in directory {v}", manifest.version),
            ));
        }
        Ok(manifest)
    }

    /// Recomputes the checksum of every file of `version` and returns its manifest when all match. A
    /// listed file that is missing, has another size or checksum, or a file in the directory that the
    /// manifest does not list, is an [`Error::Corrupt`] naming that file.
    pub fn verify(&self, version: &str) -> Result<VersionManifest> {
        let manifest = self.manifest(version)?;
        let dir = self.root.join(&manifest.version);
        for (name, expected) in &manifest.files {
            let path = dir.join(name);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::corrupt(
                        path.display(),
                        format!("file `{name}` of version {} is missing", manifest.version),
                    ));
                }
                Err(e) => return Err(Error::io(&path)(e)),
            };
            let found = hash_stream(&path, file, None)?;
            if &found != expected {
                return Err(Error::corrupt(
                    path.display(),
                    format!(
                        "checksum mismatch in file `{name}` of version {}: manifest has sha256 {} ({} bytes), \
                         file has sha256 {} ({} bytes)",
                        manifest.version, expected.sha256, expected.bytes, found.sha256, found.bytes
                    ),
                ));
            }
        }
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != MANIFEST && name != MANIFEST_SUM && !manifest.files.contains_key(&name) {
                return Err(Error::corrupt(
                    entry.path().display(),
                    format!(
                        "file `{name}` of version {} is not listed in {MANIFEST} (checksum mismatch)",
                        manifest.version
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// The contents of `CURRENT.json`, or `None` when nothing has been promoted.
    pub fn current_state(&self) -> Result<Option<CurrentState>> {
        let path = self.root.join(CURRENT);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| Error::corrupt(path.display(), format!("not a registry pointer: {e}")))
    }

    /// The promoted version, or `None` when nothing has been promoted.
    pub fn current(&self) -> Result<Option<String>> {
        Ok(self.current_state()?.map(|s| s.version))
    }

    fn write_current(&self, state: &CurrentState) -> Result<()> {
        write_json(&self.root.join(CURRENT), state)?;
        sync_dir(&self.root)
    }

    /// Makes `version` the current one. The version is [verified](Self::verify) first: a corrupt or
    /// unknown version is refused and `CURRENT.json` is left untouched. Otherwise `CURRENT.json` is
    /// replaced atomically, the previous current version becoming the newest history entry. Promoting
    /// the current version again changes nothing.
    pub fn promote(&self, version: &str) -> Result<()> {
        let manifest = self.verify(version)?;
        let version = manifest.version;
        let old = self.current_state()?;
        let history = match old {
            Some(old) if old.version == version => return Ok(()),
            Some(old) => {
                let mut h: Vec<String> = old
                    .history
                    .into_iter()
                    .filter(|v| *v != version && *v != old.version)
                    .collect();
                h.push(old.version);
                h
            }
            None => Vec::new(),
        };
        self.write_current(&CurrentState {
            version,
            promoted_at_ms: now_ms(),
            history,
        })
    }

    /// Returns to the newest history entry that still verifies (skipping deleted or corrupt ones, which
    /// leave the history along with the version rolled back from) and returns it. An error, with
    /// `CURRENT.json` untouched, when nothing is promoted or no history entry verifies.
    pub fn rollback(&self) -> Result<String> {
        let Some(state) = self.current_state()? else {
            return Err(Error::invalid("rollback", "", "nothing has been promoted yet"));
        };
        let mut history = state.history;
        let mut skipped = Vec::new();
        while let Some(candidate) = history.pop() {
            match self.verify(&candidate) {
                Ok(m) => {
                    self.write_current(&CurrentState {
                        version: m.version.clone(),
                        promoted_at_ms: now_ms(),
                        history,
                    })?;
                    return Ok(m.version);
                }
                Err(e) => skipped.push(format!("{candidate}: {e}")),
            }
        }
        let reason = if skipped.is_empty() {
            "no previously promoted version to roll back to".to_string()
        } else {
            format!("no previously promoted version verifies ({})", skipped.join("; "))
        };
        Err(Error::invalid("rollback", &state.version, reason))
    }

    /// The published versions in ascending semver order (unfinished `.tmp-*` publishes are invisible).
    pub fn list(&self) -> Result<Vec<VersionSummary>> {
        let current = self.current()?;
        let mut out = Vec::new();
        for v in self.versions()? {
            let version = v.to_string();
            let manifest = match self.manifest(&version) {
                Ok(m) => m,
                // Pruned while we were listing.
                Err(_) if !self.root.join(&version).exists() => continue,
                Err(e) => return Err(e),
            };
            out.push(VersionSummary {
                current: current.as_deref() == Some(version.as_str()),
                version,
                created_at_ms: manifest.created_at_ms,
                metrics: manifest.metrics,
            });
        }
        Ok(out)
    }

    /// Deletes old versions: keeps the newest `keep` versions (by semver) plus the current one, deletes
    /// the others, drops them from the rollback history and returns them in ascending order. Also removes
    /// what interrupted operations left behind (`.tmp-*` directories, temporary `CURRENT.json` files),
    /// so it must not run beside a publish. [`DEFAULT_KEEP`] is the ADR's policy.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>> {
        for entry in fs::read_dir(&self.root).map_err(Error::io(&self.root))? {
            let entry = entry.map_err(Error::io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && name.starts_with(TMP_PREFIX) {
                fs::remove_dir_all(&path).map_err(Error::io(&path))?;
            } else if !is_dir && name.starts_with(&format!(".{CURRENT}.tmp-")) {
                fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }

        let state = self.current_state()?;
        let current = state.as_ref().map(|s| s.version.clone());
        let versions: Vec<String> = self.versions()?.iter().map(|v| v.to_string()).collect();
        let cut = versions.len().saturating_sub(keep);
        let doomed: Vec<String> = versions[..cut]
            .iter()
            .filter(|v| Some(v.as_str()) != current.as_deref())
            .cloned()
            .collect();
        // Take the versions out of the history first: a crash then leaves unreferenced versions, never
        // a history naming deleted ones.
        if let Some(mut state) = state {
            let before = state.history.len();
            state.history.retain(|v| !doomed.contains(v));
            if state.history.len() != before {
                self.write_current(&state)?;
            }
        }
        for v in &doomed {
            // Rename away first so that the version disappears at once rather than file by file.
            let from = self.root.join(v);
            let to = self.root.join(format!("{TMP_PREFIX}del-{}", unique_token()));
            fs::rename(&from, &to).map_err(Error::io(&from))?;
            fs::remove_dir_all(&to).map_err(Error::io(&to))?;
        }
        if !doomed.is_empty() {
            sync_dir(&self.root)?;
        }
        Ok(doomed)
    }
}

/// The files of a staging directory, by name; anything but regular files (or links to them) is refused.
fn staged_files(staging: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = fs::read_dir(staging).map_err(Error::io(staging))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(staging))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(Error::invalid("staging", path.display(), "file names must be UTF-8"));
        };
        let meta = fs::metadata(&path).map_err(Error::io(&path))?;
        if !meta.is_file() {
            return Err(Error::invalid(
                "staging",
                path.display(),
                "not a regular file (a staging directory is flat)",
            ));
        }
        if name == MANIFEST || name == MANIFEST_SUM {
            return Err(Error::invalid(
                "staging",
                path.display(),
                format!("`{name}` is reserved for the registry"),
            ));
        }
        out.push((name, path));
    }
    if out.is_empty() {
        return Err(Error::invalid("staging", staging.display(), "no files to publish"));
    }
    out.sort();
    Ok(out)
}

/// Files of a model version in the registry (what training writes and serving reads).
pub mod files {
    /// The weights ([`crate::model::inference::TwoTowerModel::save`]).
    pub const MODEL: &str = "model.bin";
    /// The [`crate::model::TwoTowerConfig`] as JSON.
    pub const CONFIG: &str = "config.json";
    /// Evaluation metrics.
    pub const METRICS: &str = "metrics.json";
    /// Vocabularies of the categorical inputs ([`super::Vocabularies`]).
    pub const VOCAB: &str = "vocab.json";
    /// Data window, row counts and protocol (written by `recsys-train`; serving does not read it).
    pub const DATA: &str = "data.json";
    /// The fitted online re-ranker ([`crate::rerank::Reranker::save`]), when one was fitted.
    pub const RERANKER: &str = "reranker.json";
    /// HNSW graph of the item embeddings ([`crate::retrieval::HnswIndex::save`], built with the
    /// default [`crate::retrieval::HnswConfig`]), when training asked for one.
    pub const HNSW: &str = "items.hnsw";
}

/// String vocabularies behind the model's categorical codes (code = 1 + index; 0 = unknown): a
/// version's [`files::VOCAB`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Vocabularies {
    /// Category names.
    pub categories: Vec<String>,
    /// Brand names.
    pub brands: Vec<String>,
    /// Age buckets.
    pub ages: Vec<String>,
    /// Regions.
    pub regions: Vec<String>,
    /// Upper bounds of the price buckets.
    pub price_bounds: Vec<f64>,
}

impl Vocabularies {
    /// Reads the vocabularies of the model version in `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(files::VOCAB);
        let text = fs::read(&path).map_err(Error::io(&path))?;
        serde_json::from_slice(&text).map_err(|e| Error::corrupt(path.display(), format!("not a vocabulary file: {e}")))
    }
}

/// The directory of model `spec`: a directory holding [`files::MODEL`] itself, or a version of
/// `registry` (`current` for the promoted one), checked against its manifest's checksums when
/// `verify` (else only the manifest is read).
pub fn model_dir(spec: &str, registry: Option<&Path>, verify: bool) -> Result<PathBuf> {
    // With a registry, `current` and version names always mean the registry's (verified) version,
    // never a directory of that name that happens to be in the working directory.
    let names_a_version = spec == "current" || parse_version(spec).is_ok();
    let as_path = Path::new(spec);
    if !(registry.is_some() && names_a_version) && as_path.join(files::MODEL).is_file() {
        return Ok(as_path.to_path_buf());
    }
    let root = registry.ok_or_else(|| {
        Error::invalid(
            "model",
            spec,
            "not a model directory; pass --registry DIR to look up a version",
        )
    })?;
    let reg = Registry::open(root)?;
    let version = if spec == "current" {
        reg.current()?
            .ok_or_else(|| Error::invalid("model", spec, "the registry has no current version"))?
    } else {
        spec.to_string()
    };
    if verify {
        reg.verify(&version)?;
    } else {
        reg.manifest(&version)?;
    }
    reg.path_of(&version)
}

/// Loads the weights of model `spec` (as in [`model_dir`], verified) and returns them with the
/// version's directory.
pub fn load_model(spec: &str, registry: Option<&Path>) -> Result<(crate::model::inference::TwoTowerModel, PathBuf)> {
    let dir = model_dir(spec, registry, true)?;
    let path = dir.join(files::MODEL);
    let f = File::open(&path).map_err(Error::io(&path))?;
    let model = crate::model::inference::TwoTowerModel::load(&mut io::BufReader::new(f))
        .map_err(|e| Error::corrupt(path.display(), e.to_string()))?;
    Ok((model, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_version_name_reaches_outside_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path().join("reg")).unwrap();
        // A model file outside the registry that a traversal would reach.
        fs::write(dir.path().join("model.bin"), b"not a model").unwrap();
        for bad in [
            "..",
            "../",
            "../reg/../",
            "..%2F..%2Fetc",
            "%2e%2e",
            "/etc",
            "/",
            "1.0.0/../..",
            "1.0.0\0x",
            "a\0b",
            "C:\\x",
        ] {
            assert!(reg.path_of(bad).is_err(), "{bad:?} accepted");
            let err = model_dir(bad, Some(&dir.path().join("reg")), true).unwrap_err();
            assert!(err.is_user_error(), "{bad:?}: {err}");
        }
        assert_eq!(reg.path_of("v1.2.3").unwrap(), dir.path().join("reg").join("1.2.3"));
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(parse_version("1.2.3").unwrap().to_string(), "1.2.3");
        assert_eq!(parse_version("v1.2.3").unwrap().to_string(), "1.2.3");
        for bad in ["../x", "1.2", "", "1.2.3/..", "01.2.3", "/etc"] {
            assert!(parse_version(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hex_is_lowercase_sha256() {
        let e = hash_stream(Path::new("x"), &b"abc"[..], None).unwrap();
        assert_eq!(
            e.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(e.bytes, 3);
    }
}
