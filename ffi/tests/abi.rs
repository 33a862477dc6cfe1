//! The ABI's two promises that no compiler checks: the committed header is exactly what the
//! pinned cbindgen generates from the sources, and every export runs inside the panic boundary.

use std::fs;
use std::path::{Path, PathBuf};

const BLESS: &str = "FENCEKIT_BLESS";

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let config =
        cbindgen::Config::from_file(crate_dir().join("cbindgen.toml")).expect("read cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir().join("src/lib.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = crate_dir().join("include/fencekit.h");
    if std::env::var_os(BLESS).is_some() {
        fs::write(&path, &generated).expect("write the header");
        return;
    }
    let committed = fs::read(&path).unwrap_or_default();
    if committed != generated {
        let first = committed
            .split(|&b| b == b'\n')
            .zip(generated.split(|&b| b == b'\n'))
            .position(|(a, b)| a != b)
            .map_or("at the end".to_owned(), |line| {
                format!("at line {}", line + 1)
            });
        panic!(
            "{} differs from what cbindgen generates ({first}); regenerate it with \
             `{BLESS}=1 cargo test -p fencekit-ffi --test abi` and commit it",
            path.display()
        );
    }
}

/// The body of each `extern "C" fn` in `source`, with the function's name. The unit tests'
/// callbacks (after `#[cfg(test)]`) are not exports.
fn exports(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = source.split("#[cfg(test)]").next().unwrap_or(source);
    while let Some(at) = rest.find("extern \"C\" fn ") {
        let after = &rest[at + "extern \"C\" fn ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let open = after.find('{').expect("a function body");
        let mut depth = 0;
        let mut end = open;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((name, after[open..=end].to_owned()));
        rest = &after[end..];
    }
    found
}

/// True when the body's first statement enters the boundary: one of the prologues of
/// `boundary.rs` (or `boundary::free` in an `unsafe` block), or, before it, only the borrow of
/// the pointer arguments the prologue takes (`let (fence, out) = unsafe { (fence.as_ref(),
/// Out::new(out)) };`).
fn is_guarded(body: &str) -> bool {
    let code: Vec<&str> = body[1..]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let enters = |line: &str| {
        let line = line.strip_prefix("boundary::").unwrap_or(line);
        [
            "with_handle(",
            "with_handle_out(",
            "with_handle_out_or_reject(",
            "without_handle(",
            "without_handle_out(",
            "infallible(",
        ]
        .iter()
        .any(|g| line.starts_with(g))
    };
    match code.as_slice() {
        [first, ..] if enters(first) => true,
        [first, ..] if first.starts_with("unsafe { boundary::free(") => true,
        [first, ..] if first.starts_with("let ") => {
            // The borrow may span lines: it ends at the first `;`.
            let Some(end) = code.iter().position(|l| l.ends_with(';')) else {
                return false;
            };
            is_borrow(&code[..=end].join(" ")) && code.get(end + 1).is_some_and(|l| enters(l))
        }
        _ => false,
    }
}

/// True for `let <names> = unsafe { <items> };` where every item is `<name>.as_ref()` or
/// `Out::new(<name>)`: the pointer arguments borrowed, nothing else done.
fn is_borrow(statement: &str) -> bool {
    let Some((_, value)) = statement.split_once(" = unsafe { ") else {
        return false;
    };
    let Some(items) = value.strip_suffix(" };") else {
        return false;
    };
    let items = items
        .strip_prefix('(')
        .and_then(|i| i.strip_suffix(')'))
        .unwrap_or(items);
    let name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    items.split(',').map(str::trim).all(|item| {
        item.strip_suffix(".as_ref()").is_some_and(name)
            || item
                .strip_prefix("Out::new(")
                .and_then(|i| i.strip_suffix(')'))
                .is_some_and(name)
    })
}

/// Every `.rs` file under `dir`, subdirectories included.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("list the directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn every_export_runs_inside_the_panic_boundary() {
    let mut count = 0;
    for path in sources(&crate_dir().join("src")) {
        let source = fs::read_to_string(&path).expect("read source");
        for (name, body) in exports(&source) {
            count += 1;
            assert!(
                is_guarded(&body),
                "{}: {name} does not enter the panic boundary first",
                path.display()
            );
        }
    }
    assert!(count > 30, "found only {count} exports: the scan is broken");
}

#[test]
fn the_scan_catches_an_unguarded_export() {
    let planted = "pub extern \"C\" fn fk_oops(f: *const F) -> u32 {\n    let x = 1;\n    with_handle(x, || 0)\n}";
    let found = exports(planted);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "fk_oops");
    assert!(!is_guarded(&found[0].1));
    assert!(is_guarded(
        "{\n    // why\n    without_handle(|| Ok(()))\n}"
    ));
    assert!(is_guarded(
        "{\n    // SAFETY: why\n    let (f, out) = unsafe { (f.as_ref(), Out::new(out)) };\n    with_handle_out(f, \"f\", out, \"out\", |_| Ok(1))\n}"
    ));
    // A borrow that does anything else first has left the boundary.
    assert!(!is_guarded(
        "{\n    let f = unsafe { f.as_ref().unwrap() };\n    with_handle(Some(f), \"f\", |_| Ok(()))\n}"
    ));
    assert!(!is_guarded(
        "{\n    let f = unsafe { f.as_ref() };\n    let x = 1;\n    with_handle(f, \"f\", |_| Ok(()))\n}"
    ));
}
