//! The invariants the code cites ("I5", "DESIGN.md I3") are sections of docs/DESIGN.md: a
//! reference to one that does not exist fails here, naming the file and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Files that may cite an invariant.
const CITING: &[&str] = &["rs", "md", "go", "py", "c", "h", "sh", "toml"];
/// Directories never read: build output, dependencies, virtual environments.
const SKIPPED: &[&str] = &["target", ".git", "node_modules", ".venv", "venv", "vendor"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ is inside the workspace")
        .to_path_buf()
}

/// The numbers of the invariants in `text`: each `I<n>` standing alone as a word. WebAssembly's
/// value types `I32` and `I64` are not invariants.
fn cited(text: &str) -> Vec<u32> {
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    for (i, _) in text.match_indices('I') {
        if i > 0 && is_word(bytes[i - 1]) {
            continue;
        }
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = i + 1 + digits;
        if digits == 0 || digits > 2 || bytes.get(end).is_some_and(|&b| is_word(b)) {
            continue;
        }
        let n: u32 = text[i + 1..end].parse().expect("digits");
        if n != 32 && n != 64 {
            found.push(n);
        }
    }
    found
}

/// The invariants the design defines: its `### I<n>: ...` headings.
fn defined(design: &str) -> BTreeSet<u32> {
    design
        .lines()
        .filter_map(|line| line.strip_prefix("### I"))
        .filter_map(|rest| rest.split(':').next()?.parse().ok())
        .collect()
}

fn citing_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !SKIPPED.contains(&name) && !name.starts_with("target") {
                citing_files(&path, out);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CITING.contains(&e))
        {
            out.push(path);
        }
    }
}

#[test]
fn every_cited_invariant_is_a_section_of_the_design() {
    let root = workspace();
    let design = std::fs::read_to_string(root.join("docs/DESIGN.md")).expect("docs/DESIGN.md");
    let sections = defined(&design);
    assert_eq!(
        sections,
        (1..=9).collect(),
        "docs/DESIGN.md defines I1 to I9, one `### I<n>: ...` heading each"
    );
    let mut files = Vec::new();
    citing_files(&root, &mut files);
    assert!(
        files.len() > 100,
        "the walk found the repository ({} files)",
        files.len()
    );
    let mut missing = Vec::new();
    let mut citations = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            for n in cited(line) {
                citations += 1;
                if !sections.contains(&n) {
                    missing.push(format!(
                        "{}:{}: I{n}",
                        file.strip_prefix(&root).unwrap_or(file).display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(
        citations > 50,
        "the code cites the invariants ({citations} found)"
    );
    assert!(
        missing.is_empty(),
        "cited invariants docs/DESIGN.md does not define:\n{}",
        missing.join("\n")
    );
}

#[test]
fn citations_are_found_where_they_are_and_only_there() {
    assert_eq!(cited("(DESIGN.md I5) and I3: and I2,I9"), [5, 3, 2, 9]);
    assert_eq!(cited("I1 to I9"), [1, 9]);
    // Not invariants: WebAssembly types, words that merely contain I and digits.
    assert!(cited("I32 I64 FI3 I3x x_I3 I123").is_empty());
    // (Built at run time, so that this file cites no undefined invariant itself.)
    assert_eq!(
        cited(&format!("I{}", 10)),
        [10],
        "a tenth invariant would be checked too"
    );
}
