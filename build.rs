//! Gives libnctls.so a soname with the major version (libnctls.so.0), so
//! programs linked against it keep working across compatible updates.
fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnctls.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
