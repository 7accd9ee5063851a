//! What was loaded from the certificate, CA and CRL files, and when each of
//! them stops being usable: the summary `--check` prints, and the expiry
//! findings logged at start, on reload and once a day.
//!
//! An expired or not-yet-valid server certificate and an expired current CRL
//! are errors: clients are refused with messages that read like their own
//! fault. They are reported loudly, but the daemon still starts: a device
//! whose clock is not set yet at boot must keep its management access.

use crate::config::crl::{self, Crl};
use crate::identity::der::{self, Validity};

const DAY: i64 = 86_400;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `--check` fails; logged at error level.
    Error,
    /// `--check` still passes; logged at warning level.
    Warning,
}

/// One thing wrong or soon due, as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong or due and when, naming the certificate or CRL and
    /// its file, as one line.
    pub text: String,
}

/// A certificate as the summary and the expiry checks see it.
#[derive(Clone, Debug)]
struct CertFacts {
    subject: String,
    /// The certificate's public key, to recognise a renewed copy.
    public_key: Vec<u8>,
    validity: Option<Validity>,
}

impl CertFacts {
    fn of(der: &[u8]) -> CertFacts {
        CertFacts {
            subject: der::subject_text(der),
            public_key: der::public_key_info(der).unwrap_or_default().to_vec(),
            validity: der::validity(der),
        }
    }
}

#[derive(Clone, Debug)]
struct CrlFacts {
    file: String,
    issuer: String,
    this_update: i64,
    next_update: Option<i64>,
    number: Option<Vec<u8>>,
    /// Chosen to decide for its issuer (see [`crl::select`]).
    current: bool,
}

/// The loaded files, reduced to what is reported about them.
#[derive(Clone, Debug)]
pub struct Inventory {
    cert_file: String,
    server: CertFacts,
    ca_file: String,
    cas: Vec<CertFacts>,
    crls: Vec<CrlFacts>,
    /// Found while loading, e.g. a key file others can read.
    load_warnings: Vec<String>,
}

impl Inventory {
    /// `cert_file`, `ca_file` and each CRL's file are as errors name them
    /// (`--cert x509-server.pem`).
    pub fn new(
        cert_file: String,
        server_cert: &[u8],
        ca_file: String,
        cas: &[impl AsRef<[u8]>],
        crls: &[(String, Crl)],
        load_warnings: Vec<String>,
    ) -> Inventory {
        let loaded: Vec<Crl> = crls.iter().map(|(_, c)| c.clone()).collect();
        let chosen = crl::select(&loaded);
        Inventory {
            cert_file,
            server: CertFacts::of(server_cert),
            ca_file,
            cas: cas.iter().map(|c| CertFacts::of(c.as_ref())).collect(),
            crls: crls
                .iter()
                .zip(chosen)
                .map(|((file, c), current)| CrlFacts {
                    file: file.clone(),
                    issuer: c.fields.issuer_text.clone(),
                    this_update: c.fields.this_update,
                    next_update: c.fields.next_update,
                    number: c.fields.number.clone(),
                    current,
                })
                .collect(),
            load_warnings,
        }
    }

    /// Warnings found while loading (not time-dependent).
    pub fn load_warnings(&self) -> &[String] {
        &self.load_warnings
    }

    /// What was loaded, one line each: the server certificate's subject and
    /// notAfter, the number of CAs, each CRL's issuer and nextUpdate.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "server certificate: {} notAfter {} ({})",
            self.server.subject,
            self.server
                .validity
                .map_or("unknown".into(), |v| der::format_time(v.not_after)),
            self.cert_file
        )];
        lines.push(format!(
            "CA certificates: {} ({})",
            self.cas.len(),
            self.ca_file
        ));
        for c in &self.crls {
            let number = c.number.as_ref().map_or("none".to_string(), |n| {
                n.iter().map(|b| format!("{b:02X}")).collect::<String>()
            });
            lines.push(format!(
                "CRL: issuer {} thisUpdate {} nextUpdate {} number {}{} ({})",
                c.issuer,
                der::format_time(c.this_update),
                c.next_update.map_or("none".into(), der::format_time),
                if number.is_empty() { "0" } else { &number },
                if c.current {
                    ""
                } else {
                    ", superseded by a newer CRL from the same issuer"
                },
                c.file
            ));
        }
        lines
    }

    /// What has expired, is not valid yet, or expires within `warn_days`
    /// days (0: no advance warnings), as of `now` (seconds since the epoch).
    pub fn expiry(&self, now: i64, warn_days: u32) -> Vec<Finding> {
        let soon = now + i64::from(warn_days) * DAY;
        let mut out = Vec::new();
        let mut add = |severity, text| out.push(Finding { severity, text });
        if let Some(v) = self.server.validity {
            let what = format!(
                "server certificate {} ({})",
                self.server.subject, self.cert_file
            );
            if now > v.not_after {
                add(
                    Severity::Error,
                    format!(
                        "{what} expired on {}: clients will refuse the handshake",
                        der::format_time(v.not_after)
                    ),
                );
            } else if now < v.not_before {
                add(
                    Severity::Error,
                    format!(
                        "{what} is not valid until {}: clients will refuse the handshake \
                         (is the clock right? it says {})",
                        der::format_time(v.not_before),
                        der::format_time(now)
                    ),
                );
            } else if warn_days > 0 && v.not_after <= soon {
                add(Severity::Warning, expires_in(&what, v.not_after, now));
            }
        }
        for (i, ca) in self.cas.iter().enumerate() {
            let Some(v) = ca.validity else { continue };
            // A renewed copy (same subject and key) that outlives this one
            // takes over: nothing to warn about.
            let renewed = self.cas.iter().any(|other| {
                other.subject == ca.subject
                    && other.public_key == ca.public_key
                    && other.validity.is_some_and(|o| o.not_after > v.not_after)
            });
            if renewed {
                continue;
            }
            let what = format!("CA certificate {} ({}) {}", i + 1, ca.subject, self.ca_file);
            if now > v.not_after {
                add(
                    Severity::Warning,
                    format!(
                        "{what} expired on {}; renew it (clients it issued may be refused)",
                        der::format_time(v.not_after)
                    ),
                );
            } else if warn_days > 0 && v.not_after <= soon {
                add(Severity::Warning, expires_in(&what, v.not_after, now));
            }
        }
        for c in self.crls.iter().filter(|c| c.current) {
            let Some(next) = c.next_update else { continue };
            let what = format!("CRL from {} ({})", c.issuer, c.file);
            if now > next {
                add(
                    Severity::Error,
                    format!(
                        "{what} expired on {} (nextUpdate): every client of that CA is \
                         refused until a current CRL is loaded (then send SIGHUP)",
                        der::format_time(next)
                    ),
                );
            } else if warn_days > 0 && next <= soon {
                add(Severity::Warning, expires_in(&what, next, now));
            }
        }
        out
    }
}

fn expires_in(what: &str, at: i64, now: i64) -> String {
    let days = (at - now) / DAY;
    format!(
        "{what} expires on {} (in {days} day{})",
        der::format_time(at),
        if days == 1 { "" } else { "s" }
    )
}

/// Now, in seconds since the epoch (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki as pki;
    use rustls::pki_types::CertificateRevocationListDer;

    fn at(y: i64, m: i64, d: i64) -> i64 {
        der::days_from_civil(y, m, d) * DAY
    }

    fn crl(ca: &pki::Ca, n: u64, this: pki::Ymd, next: pki::Ymd) -> (String, Crl) {
        let der = CertificateRevocationListDer::from(ca.crl(n, this, next, &[]));
        ("--crl c.pem".into(), Crl::parse(der).unwrap())
    }

    fn inventory(server: &pki::Issued, cas: &[&pki::Ca], crls: &[(String, Crl)]) -> Inventory {
        let cas: Vec<Vec<u8>> = cas.iter().map(|c| c.der().to_vec()).collect();
        Inventory::new(
            "--cert s.pem".into(),
            server.der(),
            "--ca ca.pem".into(),
            &cas,
            crls,
            vec![],
        )
    }

    fn texts(findings: &[Finding], severity: Severity) -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| f.text.as_str())
            .collect()
    }

    #[test]
    fn server_certificate_expired_not_yet_valid_or_expiring() {
        let ca = pki::Ca::new("CA").renewed((2020, 1, 1), (2040, 1, 1));
        let server = ca.server_valid((2024, 1, 1), (2025, 1, 1));
        let inv = inventory(&server, &[&ca], &[]);
        let err = inv.expiry(at(2025, 6, 1), 30);
        assert_eq!(err.len(), 1);
        assert!(
            texts(&err, Severity::Error)[0].contains("expired on 2025-01-01T00:00:00Z"),
            "{err:?}"
        );
        let early = inv.expiry(at(2023, 6, 1), 30);
        assert!(
            texts(&early, Severity::Error)[0].contains("not valid until 2024-01-01"),
            "{early:?}"
        );
        let soon = inv.expiry(at(2024, 12, 11), 30);
        assert_eq!(texts(&soon, Severity::Warning).len(), 1, "{soon:?}");
        assert!(
            soon[0]
                .text
                .contains("expires on 2025-01-01T00:00:00Z (in 21 days)"),
            "{soon:?}"
        );
        assert!(
            inv.expiry(at(2024, 12, 11), 0).is_empty(),
            "0 turns warnings off"
        );
        assert!(inv.expiry(at(2024, 6, 1), 30).is_empty());
    }

    #[test]
    fn a_ca_warns_unless_a_renewed_copy_outlives_it() {
        let ca = pki::Ca::new("CA").renewed((2020, 1, 1), (2024, 1, 20));
        let server = ca.server_valid((2020, 1, 1), (2030, 1, 1));
        let inv = inventory(&server, &[&ca], &[]);
        let w = inv.expiry(at(2024, 1, 1), 30);
        assert!(
            texts(&w, Severity::Warning)[0].starts_with("CA certificate 1 (CN=CA)"),
            "{w:?}"
        );
        assert!(inv.expiry(at(2024, 2, 1), 30)[0]
            .text
            .contains("expired on 2024-01-20"));
        let renewed = ca.renewed((2024, 1, 1), (2034, 1, 1));
        let inv = inventory(&server, &[&ca, &renewed], &[]);
        assert!(inv.expiry(at(2024, 1, 1), 30).is_empty());
        assert!(inv.expiry(at(2025, 1, 1), 30).is_empty());
    }

    #[test]
    fn only_the_current_crl_counts() {
        let ca = pki::Ca::new("CA").renewed((2020, 1, 1), (2040, 1, 1));
        let server = ca.server_valid((2020, 1, 1), (2030, 1, 1));
        let stale = crl(&ca, 1, (2024, 1, 1), (2024, 2, 1));
        let fresh = crl(&ca, 2, (2024, 3, 1), (2024, 4, 1));
        let inv = inventory(&server, &[&ca], &[stale.clone(), fresh.clone()]);
        assert!(
            inv.expiry(at(2024, 3, 2), 7).is_empty(),
            "the superseded one is harmless"
        );
        let w = inv.expiry(at(2024, 3, 28), 7);
        assert!(
            texts(&w, Severity::Warning)[0].contains("CRL from CN=CA"),
            "{w:?}"
        );
        let e = inv.expiry(at(2024, 4, 2), 7);
        assert!(
            texts(&e, Severity::Error)[0].contains("expired on 2024-04-01"),
            "{e:?}"
        );
        let summary = inv.summary();
        assert_eq!(summary.len(), 4, "{summary:?}");
        assert!(summary[0]
            .starts_with("server certificate: CN=localhost notAfter 2030-01-01T00:00:00Z"));
        assert_eq!(summary[1], "CA certificates: 1 (--ca ca.pem)");
        assert!(
            summary[2].contains("nextUpdate 2024-02-01T00:00:00Z number 01, superseded"),
            "{}",
            summary[2]
        );
        assert!(summary[3].contains("issuer CN=CA") && !summary[3].contains("superseded"));
    }
}
