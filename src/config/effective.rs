//! The effective configuration, as `--check` prints it: every option of the
//! table in its order, defaults included, in config-file syntax (values
//! quoted where needed, paths from the root), so that the text saved
//! anywhere is a config file for this same configuration.

use std::fmt;

use crate::config::options::{CONFIG, OPTIONS};
use crate::config::{file, Config};

impl fmt::Display for Config {
    /// One `name = value` line per value (a repeatable option may have
    /// several); an option without a value is a `# name: none` comment.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for option in OPTIONS.iter().filter(|o| o.name != CONFIG) {
            let values = (option.show)(self);
            if values.is_empty() {
                writeln!(f, "# {}: none", option.name)?;
            }
            for value in values {
                writeln!(f, "{} = {}", option.name, file::quote(&value))?;
            }
            if option.name == "backend" {
                // What a session tries, in order (a name may resolve to several).
                let addresses = self.backend.addresses().join(" ");
                writeln!(f, "# backend addresses: {addresses}")?;
            }
        }
        Ok(())
    }
}
