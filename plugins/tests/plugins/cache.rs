//! The module cache: a second load takes the compiled code from disk; the cache trusts only
//! files that no one else could have written; a damaged entry is compiled again.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use fencekit_plugins::{Kind, ModuleCache, PluginError, PluginLimits};

use crate::support::{check, code, example};

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    found.sort();
    found
}

#[test]
fn a_cached_module_loads_and_behaves_like_a_compiled_one() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::open(dir.path().join("modules")).unwrap();
    let bytes = example("wat/max_payload.wat");
    let first = cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    let stored = entries(&dir.path().join("modules"));
    assert_eq!(stored.len(), 1, "one entry: {stored:?}");
    let mode = fs::metadata(&stored[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let second = cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    assert_eq!(first.info(), second.info());
    let v = fencekit_plugins::WasmValidator::new(second).unwrap();
    assert_eq!(code(&check(&v, b"k", &[0; 300])), 1);
    assert_eq!(code(&check(&v, b"k", &[0; 3])), 0);
}

#[test]
fn a_damaged_entry_is_compiled_again_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::open(dir.path()).unwrap();
    let bytes = example("wat/deny_prefix.wat");
    cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    let entry = entries(dir.path()).remove(0);
    fs::write(&entry, b"not compiled code").unwrap();
    let plugin = cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    let v = fencekit_plugins::WasmValidator::new(plugin).unwrap();
    assert_eq!(code(&check(&v, b"readonly/x", b"y")), 2);
    assert!(
        fs::read(&entry).unwrap().len() > 100,
        "the entry was rewritten"
    );
}

#[test]
fn a_cache_others_can_write_is_refused_and_so_is_such_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    match ModuleCache::open(&open) {
        Err(PluginError::Cache { reason, .. }) => assert!(reason.contains("go-w"), "{reason}"),
        other => panic!("a world-writable cache was opened: {other:?}"),
    }
    // A valid entry is used as it is (the file is not rewritten) while it is private, and not
    // trusted (compiled again, the file replaced) once others could have written it.
    let cache = ModuleCache::open(dir.path().join("private")).unwrap();
    let bytes = example("wat/allow_all.wat");
    cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    let entry = entries(&dir.path().join("private")).remove(0);
    let inode = |p: &std::path::Path| fs::metadata(p).unwrap().ino();
    let first = inode(&entry);
    cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    assert_eq!(
        inode(&entry),
        first,
        "a private entry is loaded, not rewritten"
    );
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).unwrap();
    cache
        .load_plugin(Kind::Validator, &bytes, PluginLimits::default())
        .unwrap();
    assert_ne!(
        inode(&entry),
        first,
        "a writable-by-others entry must not be loaded"
    );
    let mode = fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
