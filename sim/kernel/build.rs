//! Compiles the kernel's sources with the planted bugs: a cfg set by a build script applies to
//! this crate only, so unlike a cargo feature it never reaches another package's build of them.

fn main() {
    println!("cargo::rustc-cfg=fencekit_planted");
}
