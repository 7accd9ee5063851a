//! The configuration object: settings by the command line's option names,
//! then their loaded form, shared by the servers and connections made from
//! it.

use std::ffi::{c_char, CString};
use std::sync::Arc;

use crate::boundary::{arg, arg_mut, free, guard, guard_ptr, guard_void, into_c, output, text};
use crate::result::nctls_result;
use crate::strings::c_text;
use nctls::config::tls::{self, Loaded};
use nctls::config::{self, Config};

/// Settings, then their loaded form shared by the servers and connections
/// made from them.
#[derive(Default)]
pub struct nctls_config {
    pairs: Vec<(String, String)>,
    loaded: Option<Arc<Built>>,
    error: CString,
}

/// A validated configuration with its files read.
pub(crate) struct Built {
    pub(crate) config: Config,
    pub(crate) tls: Loaded,
}

impl nctls_config {
    /// The loaded form, for the calls that make servers and connections.
    pub(crate) fn built(&self) -> Result<Arc<Built>, nctls_result> {
        self.loaded.clone().ok_or(nctls_result::NotLoaded)
    }

    /// Keeps `message` for `nctls_config_error` and fails with `code`.
    fn fail(&mut self, code: nctls_result, message: &str) -> nctls_result {
        self.error = c_text(message);
        code
    }

    fn set(
        &mut self,
        name: Result<&str, nctls_result>,
        value: Result<&str, nctls_result>,
    ) -> Result<(), nctls_result> {
        let (name, value) = match (name, value) {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => {
                return Err(self.fail(e, "name and value must be UTF-8 strings"))
            }
        };
        config::check_setting(name, value).map_err(|e| self.fail(nctls_result::BadConfig, &e.0))?;
        self.pairs.push((name.to_string(), value.to_string()));
        self.loaded = None;
        self.error = CString::default();
        Ok(())
    }

    fn load(&mut self) -> Result<(), nctls_result> {
        self.loaded = None;
        let config = config::from_pairs(&self.pairs)
            .map_err(|e| self.fail(nctls_result::BadConfig, &e.0))?;
        let tls = tls::load(&config).map_err(|e| self.fail(nctls_result::LoadFailed, &e))?;
        self.loaded = Some(Arc::new(Built { config, tls }));
        self.error = CString::default();
        Ok(())
    }
}

/// Makes an empty configuration: every setting at its default (the GnuTLS
/// demo's, as for the `nctls` command). Free it with `nctls_config_free`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_new(out: *mut *mut nctls_config) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or writable (the caller's contract).
        let out = unsafe { output(out) }?;
        out.write(into_c(nctls_config::default()));
        Ok(())
    })
}

/// Frees a configuration; NULL is ignored. Servers and connections made from
/// it keep what they need, so it may be freed while they live. Not
/// thread-safe with other calls on the same configuration.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_free(cfg: *mut nctls_config) {
    // SAFETY: NULL or made by nctls_config_new and not freed before (the caller's contract).
    guard_void(|| unsafe { free(cfg) })
}

/// Adds one setting, with the names and values of the `nctls` command's
/// options without the dashes (`"backend"`, `"127.0.0.1:2023"`), as in a
/// config file but taken as is (no quotes, escapes or comments); a
/// repeatable option (`listen`, `map`, `crl`, `user-fields`) adds to its
/// list, any other replaces the earlier value.
/// `"config"` names a config file, read at `nctls_config_load`, whose lines
/// come before every setting made here. The name and the value are checked
/// now (NCTLS_RESULT_BAD_CONFIG, with the reason in `nctls_config_error`);
/// combinations and files are checked by `nctls_config_load`. A setting
/// unloads the configuration. Not thread-safe with other calls on `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_set(
    cfg: *mut nctls_config,
    name: *const c_char,
    value: *const c_char,
) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live config, not used elsewhere during this
        // call; NULL or NUL-terminated strings (the caller's contract).
        let (cfg, name, value) = unsafe { (arg_mut(cfg)?, text(name), text(value)) };
        cfg.set(name, value)
    })
}

/// Validates the settings as a whole and reads every file they name (server
/// certificate and key, CA, CRLs, config file), as `nctls --check` does.
/// Servers and connections are made from the loaded form; loading again
/// re-reads the files (for new servers and connections only). Errors:
/// NCTLS_RESULT_BAD_CONFIG or NCTLS_RESULT_LOAD_FAILED, with the option,
/// file and reason in `nctls_config_error`. Not thread-safe with other
/// calls on `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_load(cfg: *mut nctls_config) -> nctls_result {
    guard(|| {
        // SAFETY: NULL or a live config, not used elsewhere during this call.
        unsafe { arg_mut(cfg) }?.load()
    })
}

/// Why the last `nctls_config_set` or `nctls_config_load` on `cfg` failed,
/// naming the option (and file); "" after a success, NULL if `cfg` is NULL.
/// Owned by `cfg`, valid until its next set, load or free. Thread-safe with
/// other calls that only read `cfg`.
#[no_mangle]
pub unsafe extern "C" fn nctls_config_error(cfg: *const nctls_config) -> *const c_char {
    guard_ptr(|| {
        // SAFETY: NULL or a live config (the caller's contract).
        let cfg = unsafe { arg(cfg) }.ok()?;
        Some(cfg.error.as_ptr())
    })
}
