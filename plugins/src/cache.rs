//! A cache of compiled modules on disk, so that a process restarting with the same plugins
//! skips compiling them (about 1 ms each for small ones, far more for large ones).
//!
//! Loading compiled code runs it without the checks compiling does, so the cache trusts only
//! bytes this user's processes wrote: the directory must belong to the current user and be
//! writable by nobody else, each file too, and files are written under a temporary name and
//! renamed into place. An entry is keyed by the module's SHA-256, the plugin kind and the
//! engine's compatibility hash (wasmtime version, settings, CPU features), so a changed module
//! or engine never meets an old entry. An entry that fails to load is compiled again.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Module;

use crate::engine::{self, Kind};
use crate::error::PluginError;
use crate::limits::PluginLimits;
use crate::plugin::{self, Plugin};
use crate::precheck;

/// A directory of compiled modules, private to this user.
#[derive(Clone, Debug)]
pub struct ModuleCache {
    dir: PathBuf,
}

fn cache_error(path: &Path, reason: impl Into<String>) -> PluginError {
    PluginError::Cache {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Refuses a file or directory that another user owns or could write.
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), PluginError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        return Err(cache_error(
            path,
            format!(
                "owned by uid {}, not by this user (uid {me})",
                metadata.uid()
            ),
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(cache_error(
            path,
            format!(
                "mode {:o} lets others write it; compiled code is loaded from here, so it must \
                 be writable by its owner only (chmod go-w)",
                metadata.mode() & 0o777
            ),
        ));
    }
    Ok(())
}

impl ModuleCache {
    /// Opens the cache in `dir`, creating it (mode 0700) if needed. Refuses a directory that
    /// another user owns or could write.
    pub fn open(dir: impl AsRef<Path>) -> Result<ModuleCache, PluginError> {
        let dir = dir.as_ref().to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| cache_error(&dir, format!("create: {e}")))?;
        let metadata = fs::metadata(&dir).map_err(|e| cache_error(&dir, e.to_string()))?;
        check_private(&dir, &metadata)?;
        Ok(ModuleCache { dir })
    }

    fn entry(&self, kind: Kind, bytes: &[u8]) -> Result<PathBuf, PluginError> {
        let engine = engine::engine(kind)?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let sha: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(self.dir.join(format!(
            "{}-{sha}-{:016x}.cwasm",
            kind.as_str(),
            hasher.finish()
        )))
    }

    /// The compiled module for `bytes`, if this cache holds a trustworthy one that loads.
    fn load(&self, kind: Kind, path: &Path) -> Option<Module> {
        let metadata = fs::symlink_metadata(path).ok()?;
        if !metadata.is_file() || check_private(path, &metadata).is_err() {
            return None;
        }
        let engine = engine::engine(kind).ok()?;
        // SAFETY: the file was written by `store` in a directory only this user can write
        // (checked at open), is a regular file owned by this user and writable by no one else
        // (checked above), and its name carries the engine's compatibility hash; wasmtime
        // checks its header against the engine again.
        unsafe { Module::deserialize_file(engine, path) }.ok()
    }

    fn store(&self, path: &Path, module: &Module) -> Result<(), PluginError> {
        let bytes = module
            .serialize()
            .map_err(|e| cache_error(path, format!("serialize: {e:#}")))?;
        let temp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_data()?;
            fs::rename(&temp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            cache_error(path, format!("write: {e}"))
        })
    }

    /// Loads a plugin as [`Plugin::load`] does, taking its compiled code from this cache when
    /// it holds it, and storing it there when not. A cache that cannot be written only costs
    /// the next start a compilation; the plugin still loads.
    pub fn load_plugin(
        &self,
        kind: Kind,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Plugin, PluginError> {
        // The load limits hold whether or not the cache has the module: a module refused
        // without the cache is refused with it.
        let binary = precheck::binary(bytes, &limits)?;
        precheck::check(&binary, &limits)?;
        let path = self.entry(kind, bytes)?;
        if let Some(module) = self.load(kind, &path) {
            return Plugin::from_module(kind, module, bytes, limits);
        }
        let module = plugin::compile_checked(kind, binary.into_owned(), &limits)?;
        let plugin = Plugin::from_module(kind, module.clone(), bytes, limits)?;
        if let Err(e) = self.store(&path, &module) {
            log::warn!("{e}");
        }
        Ok(plugin)
    }
}
