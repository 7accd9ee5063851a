//! Configuration: the option table, the command line and the config file,
//! validated into a [`Config`]; and the TLS server configuration built from
//! the files it names (PEM, CRL choice, what was loaded and when it
//! expires).

pub mod backend;
pub mod crl;
pub mod file;
pub mod inventory;
mod options;
pub mod pem;
pub mod tls;

pub use options::*;
