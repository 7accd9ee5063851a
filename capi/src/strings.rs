//! Strings: the library's version, and the C strings made from Rust text
//! for the errors and callbacks.

use std::ffi::{c_char, CString};

use crate::boundary::guard_ptr;

/// The library's version and TLS stack, e.g. `nctls/0.1.0 rustls/0.23 ring`.
/// A static string. Thread-safe.
#[no_mangle]
pub extern "C" fn nctls_version() -> *const c_char {
    guard_ptr(|| {
        let version = concat!("nctls/", env!("CARGO_PKG_VERSION"), " rustls/0.23 ring\0");
        Some(version.as_ptr().cast())
    })
}

/// A C string for text that may (in theory) hold a NUL, such as a
/// certificate subject: a NUL shows as `\0`.
pub(crate) fn c_text(s: &str) -> CString {
    CString::new(s.replace('\0', "\\0")).unwrap_or_default()
}

/// The string, or NULL without one.
pub(crate) fn text_ptr(s: &Option<CString>) -> *const c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    #[test]
    fn text_with_a_nul_still_reaches_c() {
        assert_eq!(c_text("CN=a\0b").as_c_str(), c"CN=a\\0b");
        assert!(text_ptr(&None).is_null());
        // SAFETY: a static C string.
        let version = unsafe { CStr::from_ptr(nctls_version()) }.to_str().unwrap();
        assert!(version.starts_with(concat!("nctls/", env!("CARGO_PKG_VERSION"), " ")));
    }
}
