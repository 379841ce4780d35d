//! The versioned model registry and the validation gates.
//!
//! A model-agnostic store of trained artifacts with semantic versions, following the ADR ("store with
//! semantic versioning; keep the last 10 versions for rollback"):
//!
//! ```text
//! REG/<version>/                 one directory per version (e.g. REG/1.0.3/): the artifact files + manifest.json
//! REG/<version>/manifest.json    {version, created_at_ms, files: {name: {sha256, bytes}}, metrics, info}
//! REG/CURRENT.json               {"version": "1.0.3", "promoted_at_ms": .., "history": ["1.0.1", "1.0.2"]}
//! ```
//!
//! Readers never see a half-written state: [`Registry::publish`] fills a hidden `REG/.tmp-*` directory and
//! renames the complete directory into place, [`Registry::promote`] and [`Registry::rollback`] replace
//! `CURRENT.json` by renaming a complete file over it, and [`Registry::prune`] renames a version away
//! before deleting it. Any number of readers may run beside one writer; mutations (publish with an
//! automatic version, promote, rollback, prune) are meant to come from one process at a time.
//!
//! [`Gates`] decide whether a freshly trained model may be published or promoted: per-metric minimums
//! (the ADR's AUC > 0.80 and NDCG@20 > 0.65, overridable per data set) and a bounded regression
//! against the current model.
//!
//! ```no_run
//! use recsys_train::registry::{Gates, Registry};
//! use std::collections::BTreeMap;
//! use std::path::Path;
//!
//! let reg = Registry::open("out/registry")?;
//! let metrics = BTreeMap::from([("auc".to_string(), 0.86), ("ndcg@20".to_string(), 0.71)]);
//! let current = reg.current()?.map(|v| reg.manifest(&v)).transpose()?;
//! Gates::default().check(None, &metrics, current.as_ref().map(|m| &m.metrics))?;
//! let version = reg.publish(Path::new("out/model"), None, &metrics, serde_json::json!({"model": "two-tower"}))?;
//! reg.promote(&version)?;
//! # Ok::<(), recsys_train::Error>(())
//! ```

use crate::{Error, Result};
use recsys_core::atomic::{unique_token, write_atomic};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// File name of a version's manifest inside its directory.
pub const MANIFEST: &str = "manifest.json";
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

/// Parses a version (an optional leading `v` is accepted) into its canonical semver text.
fn parse_version(version: &str) -> Result<semver::Version> {
    let text = version.strip_prefix('v').unwrap_or(version);
    semver::Version::parse(text).map_err(|e| Error::arg("version", version, format!("not a semantic version: {e}")))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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
            return Err(Error::arg("registry", root.display(), "not a directory"));
        }
        Ok(Registry { root })
    }

    /// The registry directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `version` (canonicalised when it parses as a version; not checked to exist).
    pub fn path_of(&self, version: &str) -> PathBuf {
        match parse_version(version) {
            Ok(v) => self.root.join(v.to_string()),
            Err(_) => self.root.join(version),
        }
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
            return Err(Error::arg(
                "metrics",
                format!("{name}={value}"),
                "metric values must be finite",
            ));
        }
        let sources = staged_files(staging)?;

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
            return Err(Error::arg(
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
            write_json(&tmp.join(MANIFEST), &manifest)?;
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
        Err(Error::arg(
            "version",
            &version,
            format!("already published in {} (versions are immutable)", self.root.display()),
        ))
    }

    /// The manifest of `version`; an unknown version is an [`Error::InvalidArgument`] naming it.
    pub fn manifest(&self, version: &str) -> Result<VersionManifest> {
        let v = parse_version(version)?.to_string();
        let dir = self.root.join(&v);
        if !dir.is_dir() {
            return Err(Error::arg(
                "version",
                version,
                format!("no such version in registry {}", self.root.display()),
            ));
        }
        let path = dir.join(MANIFEST);
        let text = fs::read(&path).map_err(Error::io(&path))?;
        let manifest: VersionManifest =
            serde_json::from_slice(&text).map_err(|e| Error::data(&path, format!("not a version manifest: {e}")))?;
        if manifest.version != v {
            return Err(Error::data(
                &path,
                format!("manifest names version {} but lives in directory {v}", manifest.version),
            ));
        }
        Ok(manifest)
    }

    /// Recomputes the checksum of every file of `version` and returns its manifest when all match. A
    /// listed file that is missing, has another size or checksum, or a file in the directory that the
    /// manifest does not list, is an [`Error::InvalidData`] naming that file.
    pub fn verify(&self, version: &str) -> Result<VersionManifest> {
        let manifest = self.manifest(version)?;
        let dir = self.root.join(&manifest.version);
        for (name, expected) in &manifest.files {
            let path = dir.join(name);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::data(
                        &path,
                        format!("file `{name}` of version {} is missing", manifest.version),
                    ));
                }
                Err(e) => return Err(Error::io(&path)(e)),
            };
            let found = hash_stream(&path, file, None)?;
            if &found != expected {
                return Err(Error::data(
                    &path,
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
            if name != MANIFEST && !manifest.files.contains_key(&name) {
                return Err(Error::data(
                    entry.path(),
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
            .map_err(|e| Error::data(&path, format!("not a registry pointer: {e}")))
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
            return Err(Error::arg("rollback", "", "nothing has been promoted yet"));
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
        Err(Error::arg("rollback", &state.version, reason))
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
            return Err(Error::arg("staging", path.display(), "file names must be UTF-8"));
        };
        let meta = fs::metadata(&path).map_err(Error::io(&path))?;
        if !meta.is_file() {
            return Err(Error::arg(
                "staging",
                path.display(),
                "not a regular file (a staging directory is flat)",
            ));
        }
        if name == MANIFEST {
            return Err(Error::arg(
                "staging",
                path.display(),
                "`manifest.json` is reserved for the registry",
            ));
        }
        out.push((name, path));
    }
    if out.is_empty() {
        return Err(Error::arg("staging", staging.display(), "no files to publish"));
    }
    out.sort();
    Ok(out)
}

/// Thresholds a model must meet to be published or promoted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// Minimum value per metric (defaults: `{"auc": 0.80, "ndcg@20": 0.65}`, the ADR's thresholds).
    pub min: BTreeMap<String, f64>,
    /// Per-dataset overrides of `min` (dataset name -> metric -> minimum), e.g. for real data sets where
    /// the ADR's synthetic thresholds do not apply. An override replaces the minimum of its metrics only.
    pub overrides: BTreeMap<String, BTreeMap<String, f64>>,
    /// Metrics that must not fall more than `max_regression` (absolute) below the current model's.
    pub regression_metrics: Vec<String>,
    /// Largest allowed absolute drop of a regression metric against the current model.
    pub max_regression: f64,
    /// The ADR's "CTR simulation" gate: the new version's CTR on simulated traffic (the click
    /// simulator serving it through the real recommender) must reach a minimum and must not fall
    /// more than a margin below the current version's on the same traffic. Off when absent (the
    /// default); it needs a simulator, which the `recsys-train` command provides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctr_sim: Option<CtrSimGate>,
}

/// Settings of the `ctr_sim` gate (`{"ctr_sim": {"min": 0.02, "max_regression": 0.002}}` in a gates
/// file; missing fields take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CtrSimGate {
    /// Minimum simulated CTR (clicks / impressions; default 0).
    pub min: f64,
    /// Largest allowed absolute drop against the current version's simulated CTR (default 0.002).
    pub max_regression: f64,
    /// Simulated requests per version (default 20,000).
    pub requests: u64,
    /// Seed of the simulated traffic, the same for both versions (default 1).
    pub seed: u64,
}

impl Default for CtrSimGate {
    fn default() -> Self {
        CtrSimGate {
            min: 0.0,
            max_regression: 0.002,
            requests: 20_000,
            seed: 1,
        }
    }
}

impl CtrSimGate {
    /// `Ok(())` when the `candidate`'s simulated CTR meets the minimum and is at most
    /// `max_regression` below the `current` version's; else [`Error::GateFailed`] with metric
    /// `ctr_sim`.
    pub fn check(&self, candidate: f64, current: Option<f64>) -> Result<()> {
        if !meets(candidate, self.min) {
            return Err(Error::GateFailed {
                metric: "ctr_sim".into(),
                value: candidate,
                threshold: self.min,
                reason: "minimum".into(),
            });
        }
        if let Some(base) = current.filter(|b| b.is_finite()) {
            let threshold = base - self.max_regression;
            if !meets(candidate, threshold) {
                return Err(Error::GateFailed {
                    metric: "ctr_sim".into(),
                    value: candidate,
                    threshold,
                    reason: format!(
                        "regression: current model has {base:.4} on the same simulated traffic, allowed drop {:.4}",
                        self.max_regression
                    ),
                });
            }
        }
        Ok(())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !self.min.is_finite() {
            return Err(format!("ctr_sim.min is not finite: {}", self.min));
        }
        if !(self.max_regression.is_finite() && self.max_regression >= 0.0) {
            return Err(format!(
                "ctr_sim.max_regression must be finite and >= 0, got {}",
                self.max_regression
            ));
        }
        if self.requests == 0 {
            return Err("ctr_sim.requests must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            min: BTreeMap::from([("auc".to_string(), 0.80), ("ndcg@20".to_string(), 0.65)]),
            overrides: BTreeMap::new(),
            regression_metrics: vec!["recall@20".to_string(), "ndcg@20".to_string()],
            max_regression: 0.01,
            ctr_sim: None,
        }
    }
}

/// Slack for comparisons of metrics that went through decimal text and back.
const EPS: f64 = 1e-12;

/// `value >= threshold` (with [`EPS`] slack); false when either is NaN.
fn meets(value: f64, threshold: f64) -> bool {
    matches!(
        (value + EPS).partial_cmp(&threshold),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    )
}

impl Gates {
    /// Reads gates from a JSON file; missing fields take their defaults, unknown fields are refused.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read(path).map_err(Error::io(path))?;
        let gates: Gates =
            serde_json::from_slice(&text).map_err(|e| Error::data(path, format!("not a gates file: {e}")))?;
        gates.validate().map_err(|m| Error::data(path, m))?;
        Ok(gates)
    }

    /// Gates from a JSON object (a Python dict, say); the same rules as [`Gates::load`], errors name
    /// the argument `gates`.
    pub fn from_json(value: serde_json::Value) -> Result<Self> {
        let text = value.to_string();
        let gates: Gates = serde_json::from_value(value).map_err(|e| Error::arg("gates", &text, e.to_string()))?;
        gates.validate().map_err(|m| Error::arg("gates", &text, m))?;
        Ok(gates)
    }

    /// Finite thresholds and a finite, non-negative `max_regression`.
    fn validate(&self) -> std::result::Result<(), String> {
        let thresholds = self.min.iter().chain(self.overrides.values().flatten());
        if let Some((metric, t)) = thresholds.into_iter().find(|(_, t)| !t.is_finite()) {
            return Err(format!("threshold of `{metric}` is not finite: {t}"));
        }
        if !(self.max_regression.is_finite() && self.max_regression >= 0.0) {
            return Err(format!(
                "max_regression must be finite and >= 0, got {}",
                self.max_regression
            ));
        }
        if let Some(c) = &self.ctr_sim {
            c.validate()?;
        }
        Ok(())
    }

    /// The minimums that apply to `dataset`: `min` with that data set's overrides applied.
    pub fn minimums(&self, dataset: Option<&str>) -> BTreeMap<String, f64> {
        let mut min = self.min.clone();
        if let Some(o) = dataset.and_then(|d| self.overrides.get(d)) {
            min.extend(o.iter().map(|(k, v)| (k.clone(), *v)));
        }
        min
    }

    /// `Ok(())` when every gate passes; otherwise [`Error::GateFailed`] for the first failing metric:
    /// minimums (in metric-name order) before regressions (in `regression_metrics` order). A metric a
    /// gate names but `metrics` lacks fails with reason `missing`; a NaN value fails. Regressions are
    /// checked only against metrics the `current` model has.
    pub fn check(
        &self,
        dataset: Option<&str>,
        metrics: &BTreeMap<String, f64>,
        current: Option<&BTreeMap<String, f64>>,
    ) -> Result<()> {
        let fail = |metric: &str, value: f64, threshold: f64, reason: String| Error::GateFailed {
            metric: metric.to_string(),
            value,
            threshold,
            reason,
        };
        for (metric, &threshold) in &self.minimums(dataset) {
            match metrics.get(metric) {
                None => return Err(fail(metric, f64::NAN, threshold, "missing".into())),
                Some(&v) if !meets(v, threshold) => return Err(fail(metric, v, threshold, "minimum".into())),
                Some(_) => {}
            }
        }
        let Some(current) = current else {
            return Ok(());
        };
        for metric in &self.regression_metrics {
            let Some(&base) = current.get(metric).filter(|b| b.is_finite()) else {
                continue;
            };
            let threshold = base - self.max_regression;
            match metrics.get(metric) {
                None => return Err(fail(metric, f64::NAN, threshold, "missing".into())),
                Some(&v) if !meets(v, threshold) => {
                    return Err(fail(
                        metric,
                        v,
                        threshold,
                        format!(
                            "regression: current model has {base:.4}, allowed drop {:.4}",
                            self.max_regression
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn gate_error_display() {
        let e = Error::GateFailed {
            metric: "ndcg@20".into(),
            value: 0.41,
            threshold: 0.65,
            reason: "minimum".into(),
        };
        assert_eq!(
            e.to_string(),
            "validation gate failed: ndcg@20 = 0.4100 < 0.6500 (minimum)"
        );
        assert!(e.is_user_error());
    }

    #[test]
    fn ctr_sim_gate_minimum_and_regression() {
        let g = CtrSimGate {
            min: 0.02,
            max_regression: 0.002,
            ..Default::default()
        };
        assert!(g.check(0.03, None).is_ok());
        assert!(g.check(0.03, Some(0.031)).is_ok());
        assert!(
            matches!(g.check(0.019, None), Err(Error::GateFailed { ref metric, ref reason, .. })
            if metric == "ctr_sim" && reason == "minimum")
        );
        assert!(
            matches!(g.check(0.03, Some(0.0325)), Err(Error::GateFailed { ref reason, .. })
            if reason.starts_with("regression"))
        );
        assert!(g.check(f64::NAN, None).is_err());
        let parsed = Gates::from_json(serde_json::json!({"ctr_sim": {"min": 0.01}})).unwrap();
        assert_eq!(parsed.ctr_sim.unwrap().max_regression, 0.002);
        assert!(Gates::from_json(serde_json::json!({"ctr_sim": {"requests": 0}})).is_err());
        assert!(Gates::from_json(serde_json::json!({"ctr_sim": {"mni": 0.01}})).is_err());
    }

    #[test]
    fn nan_metric_fails_minimum() {
        let m = BTreeMap::from([("auc".to_string(), f64::NAN), ("ndcg@20".to_string(), 0.9)]);
        assert!(matches!(
            Gates::default().check(None, &m, None),
            Err(Error::GateFailed { ref metric, .. }) if metric == "auc"
        ));
    }
}
