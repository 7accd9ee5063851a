//! `--header confd-b64` against the real binary: ConfD's base64 header
//! form carries any user name exactly, to the ConfD emulator and to a raw
//! backend whose header is decoded with Python's base64; the other fields
//! are still checked.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::netconf::ConfdEmu;
use common::*;

const SOON: Duration = Duration::from_secs(5);

/// Separators, brackets, a newline, a space, `#` and non-ASCII.
const ODD_NAME: &str = "evil;user]\n[name #\u{fc}\u{20ac}";

/// A certificate's common name, whatever it holds, reaches ConfD exactly
/// (the emulator decodes the b64 form and logs the name with escapes).
#[test]
fn confd_b64_carries_a_common_name_exactly_to_the_emulator() {
    let pki = Pki::new();
    let emu = ConfdEmu::start();
    let daemon = Daemon::start(
        &pki,
        &[
            "--backend",
            &emu.addr.to_string(),
            "--header",
            "confd-b64",
            "--home",
            "/var/confd/homes/tls",
        ],
    );
    let mut client = connect(daemon.addr, pki.client(ODD_NAME, Version::Tls13)).unwrap();
    // The emulator's hello shows the header was accepted.
    let mut hello = [0u8; 6];
    client.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"<?xml ");
    let seen = emu
        .wait_log(" form=b64", SOON)
        .expect("the emulator logs the b64 header");
    let want = format!("user={ODD_NAME:?} source=127.0.0.1/");
    assert!(seen.contains(&want), "{seen}");
    assert!(
        seen.contains(" home=/var/confd/homes/tls form=b64"),
        "{seen}"
    );
}

/// A user from the config file (escapes and all) in the header's first
/// field, decoded by Python's base64 module; the rest is the plain form.
#[test]
fn confd_b64_header_decodes_with_python() {
    let pki = Pki::new();
    let backend = Backend::new();
    let conf = pki.file("nctls.conf");
    std::fs::write(
        &conf,
        format!(
            "backend = {}\nheader = confd-b64\nhome = /var/confd/homes/tls\n\
             user = \"evil;user]\\n[name #\\u{{fc}}\\u{{20ac}}\"\n",
            backend.arg()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&pki, &["--config", &conf]);
    let mut client = connect(daemon.addr, pki.client("admin", Version::Tls12)).unwrap();
    client.write_all(b"<hello/>").unwrap();
    let (mut b, header) = backend.accept_within(SOON).expect("backend session");
    let body = header
        .strip_prefix("b64[")
        .unwrap_or_else(|| panic!("not the b64 form: {header:?}"));
    let (user, rest) = body.split_once(';').expect("fields");
    let port = client.sock.local_addr().unwrap().port();
    assert_eq!(
        rest,
        format!("127.0.0.1/{port};ssh;9000;100;;/var/confd/homes/tls;;]\n")
    );
    let decoded = Command::new("python3")
        .args([
            "-c",
            "import base64, sys; sys.stdout.buffer.write(base64.b64decode(sys.argv[1], validate=True))",
            user,
        ])
        .output()
        .expect("python3 is needed (apt-get install python3, or run .ci/run)");
    assert!(decoded.status.success(), "{decoded:?}");
    assert_eq!(decoded.stdout, ODD_NAME.as_bytes());
    // Then the client's bytes, as always.
    let mut hello = [0u8; 8];
    b.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"<hello/>");
}

/// HOMEDIR is a plain field: a name that would break it refuses the
/// session (close_notify, backend never contacted), as does any name with
/// the plain form.
#[test]
fn confd_b64_still_refuses_what_the_other_fields_cannot_carry() {
    let pki = Pki::new();
    for header in ["confd-b64", "confd"] {
        let backend = Backend::new();
        // HOMEDIR is the default, /var/confd/homes/%u.
        let daemon = Daemon::start(&pki, &["--backend", &backend.arg(), "--header", header]);
        let mut client = connect(daemon.addr, pki.client("a;b", Version::Tls13)).unwrap();
        let _ = client.write_all(b"<hello/>");
        let (data, ending) = read_to_end(&mut client);
        assert_eq!((data.len(), ending), (0, Ending::CloseNotify), "{header}");
        assert!(
            backend.accept_within(Duration::from_millis(300)).is_none(),
            "{header}: the backend was contacted"
        );
        // A plain name still works.
        let mut client = connect(daemon.addr, pki.client("admin", Version::Tls13)).unwrap();
        client.write_all(b"x").unwrap();
        let (_, line) = backend.accept_within(SOON).expect("backend session");
        let want = match header {
            "confd" => "[admin;",
            _ => "b64[YWRtaW4=;",
        };
        assert!(line.starts_with(want), "{header}: {line:?}");
        assert!(line.ends_with(";/var/confd/homes/admin;;]\n"), "{line:?}");
    }
}
