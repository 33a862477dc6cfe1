//! Gives the shared library a SONAME carrying the ABI version, so that a program linked
//! against one ABI never loads a library of another.

/// Must equal `FK_ABI_VERSION` (src/version.rs checks it).
const ABI_VERSION: u32 = 2;

fn main() {
    let soname = format!("libfencekit.so.{ABI_VERSION}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rustc-env=FENCEKIT_SONAME={soname}");
    println!("cargo:rerun-if-changed=build.rs");
}
