//! The simulator's build of the kernel (`sim/kernel/`, with the planted bugs) compiles core's
//! sources: it must do so with core's dependencies and features, or the simulator would test
//! another kernel than the one that ships.

use std::path::Path;

/// The lines of `[section]` in the manifest at `path`, without comments and blank lines.
fn section(path: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = format!("[{name}]");
    text.lines()
        .map(str::trim)
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_planted_kernel_has_the_dependencies_and_features_of_core() {
    let sim = Path::new(env!("CARGO_MANIFEST_DIR"));
    let core = sim.join("../core/Cargo.toml");
    let planted = sim.join("kernel/Cargo.toml");
    for name in ["dependencies", "features"] {
        let (want, got) = (section(&core, name), section(&planted, name));
        assert!(!want.is_empty(), "core/Cargo.toml has no [{name}]");
        assert_eq!(
            got, want,
            "sim/kernel/Cargo.toml's [{name}] differs from core's"
        );
    }
    let lib = section(&planted, "lib");
    assert!(
        lib.contains(&r#"path = "../../core/src/lib.rs""#.to_owned()),
        "{lib:?}"
    );
}

#[test]
fn the_simulator_runs_the_planted_build_of_the_kernel() {
    // The shipped crates assert the opposite at compile time (cli/src/main.rs, ffi/src/lib.rs).
    const { assert!(fencekit::PLANTED_COMPILED_IN) };
}
