//! The boundary between C and Rust, in one place: the panic guard every
//! exported body runs in, and the helpers that turn the caller's pointers
//! into references (NULL is `NCTLS_RESULT_NULL_PARAMETER`), so that an
//! exported body is a few lines using `?`.
//!
//! A `const` pointer only ever becomes a shared reference here; only a
//! `*mut` argument becomes `&mut`.

use std::ffi::{c_char, CStr};
use std::mem::MaybeUninit;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::result::nctls_result;

/// Runs the body of a fallible call: `Ok(())` is `NCTLS_RESULT_OK`,
/// `Err(code)` that code, and a panic `NCTLS_RESULT_PANIC` instead of an
/// unwind into C.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), nctls_result>) -> nctls_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => nctls_result::Ok,
        Ok(Err(code)) => code,
        Err(_) => nctls_result::Panic,
    }
}

/// Runs the body of a call that returns a pointer (a string, mostly):
/// NULL when the body has none to give or panics.
pub(crate) fn guard_ptr<T>(body: impl FnOnce() -> Option<*const T>) -> *const T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Some(p)) => p,
        Ok(None) | Err(_) => std::ptr::null(),
    }
}

/// Runs the body of a call that returns nothing (the `*_free` calls); a
/// panic ends the body and nothing else.
pub(crate) fn guard_void(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// An object argument the call only reads.
///
/// # Safety
/// `p` is NULL or points to a live `T` that nothing changes while `'a` lasts.
pub(crate) unsafe fn arg<'a, T>(p: *const T) -> Result<&'a T, nctls_result> {
    // SAFETY: NULL or live and unchanged (the caller's contract).
    unsafe { p.as_ref() }.ok_or(nctls_result::NullParameter)
}

/// An object argument the call changes.
///
/// # Safety
/// `p` is NULL or points to a live `T` that nothing else uses while `'a` lasts.
pub(crate) unsafe fn arg_mut<'a, T>(p: *mut T) -> Result<&'a mut T, nctls_result> {
    // SAFETY: NULL or live and not aliased (the caller's contract).
    unsafe { p.as_mut() }.ok_or(nctls_result::NullParameter)
}

/// A required output, checked before the call does anything and written
/// only once it has succeeded (no partial success).
///
/// # Safety
/// `p` is NULL or points to storage for a `T`, which may be uninitialised,
/// that nothing else uses while `'a` lasts.
pub(crate) unsafe fn output<'a, T>(p: *mut T) -> Result<&'a mut MaybeUninit<T>, nctls_result> {
    // SAFETY: NULL or writable (the caller's contract); MaybeUninit does
    // not assume the storage holds a valid `T` yet.
    unsafe { p.cast::<MaybeUninit<T>>().as_mut() }.ok_or(nctls_result::NullParameter)
}

/// An output the caller may leave out (NULL).
///
/// # Safety
/// As for [`output`].
pub(crate) unsafe fn optional_output<'a, T>(p: *mut T) -> Option<&'a mut MaybeUninit<T>> {
    // SAFETY: as in `output`.
    unsafe { p.cast::<MaybeUninit<T>>().as_mut() }
}

/// A NUL-terminated UTF-8 string argument: `NCTLS_RESULT_NULL_PARAMETER`
/// for NULL, `NCTLS_RESULT_INVALID_PARAMETER` when it is not UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives and stays
/// unchanged while `'a` lasts.
pub(crate) unsafe fn text<'a>(p: *const c_char) -> Result<&'a str, nctls_result> {
    if p.is_null() {
        return Err(nctls_result::NullParameter);
    }
    // SAFETY: not NULL, NUL-terminated and live (the caller's contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| nctls_result::InvalidParameter)
}

/// Hands a new object to C, which frees it with the matching `*_free`
/// ([`free`]).
pub(crate) fn into_c<T>(object: T) -> *mut T {
    Box::into_raw(Box::new(object))
}

/// Frees an object made by [`into_c`]; NULL is ignored.
///
/// # Safety
/// `p` is NULL, or was made by `into_c`, is not freed yet, and nothing uses
/// it any more.
pub(crate) unsafe fn free<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: made by `into_c` (Box::into_raw) and ours alone (the caller's contract).
        drop(unsafe { Box::from_raw(p) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_turns_errors_and_panics_into_codes() {
        assert_eq!(guard(|| Ok(())), nctls_result::Ok);
        assert_eq!(guard(|| Err(nctls_result::Busy)), nctls_result::Busy);
        assert_eq!(guard(|| panic!("bug")), nctls_result::Panic);
        assert!(guard_ptr::<u8>(|| panic!("bug")).is_null());
        assert!(guard_ptr::<u8>(|| None).is_null());
        guard_void(|| panic!("bug"));
    }

    #[test]
    fn null_pointers_are_null_parameter_and_outputs_wait() {
        // SAFETY: NULL, or pointers to live locals.
        unsafe {
            assert_eq!(
                arg::<u8>(std::ptr::null()),
                Err(nctls_result::NullParameter)
            );
            assert_eq!(
                arg_mut::<u8>(std::ptr::null_mut()),
                Err(nctls_result::NullParameter)
            );
            assert_eq!(text(std::ptr::null()), Err(nctls_result::NullParameter));
            assert_eq!(text(c"\xff".as_ptr()), Err(nctls_result::InvalidParameter));
            assert_eq!(text(c"ok".as_ptr()), Ok("ok"));
            assert!(output::<u8>(std::ptr::null_mut()).is_err());
            assert!(optional_output::<u8>(std::ptr::null_mut()).is_none());
            let mut n = 7u32;
            output(&mut n).unwrap().write(8);
            assert_eq!(n, 8);
            free(into_c(String::from("freed")));
            free::<String>(std::ptr::null_mut());
        }
    }
}
