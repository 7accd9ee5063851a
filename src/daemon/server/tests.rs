//! The loop itself, run on a thread with a log sink.

use super::*;
use crate::daemon::hooks::with_log_sink;
use crate::test_pki as pki;
use std::sync::mpsc;

/// The daily expiry check, on a shorter period: it repeats while the
/// server runs, and only as often as asked (an idle loop stays idle).
#[test]
fn expiry_is_looked_at_again_every_period() {
    let dir = std::env::temp_dir().join(format!("nctls-expiry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = pki::Ca::new("CA");
    let soon = inventory::unix_now() + 10 * 86_400;
    let in_ten_days = crate::identity::der::format_time(soon);
    let ymd: Vec<i32> = in_ten_days[..10]
        .split('-')
        .map(|n| n.parse().unwrap())
        .collect();
    let server_cert = ca.server_valid((2020, 1, 1), (ymd[0], ymd[1] as u8, ymd[2] as u8));
    let (cert, key) = server_cert.write(&dir, "server");
    let ca_file = ca.write(&dir, "ca");
    let pair = |n: &str, v: &std::path::Path| (n.to_string(), v.display().to_string());
    let config = crate::config::from_pairs(&[
        pair("cert", &cert),
        pair("key", &key),
        pair("ca", &ca_file),
        ("listen".into(), "127.0.0.1:0".into()),
    ])
    .unwrap();
    let tls = crate::config::tls::load(&config).unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let (stop_tx, stop) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        let mut server = Server::bind(config, tls).unwrap();
        server.expiry_check_every = Duration::from_millis(100);
        stop_tx.send(server.stopper()).unwrap();
        let sink = Box::new(move |level: Level, args: &std::fmt::Arguments<'_>| {
            let _ = lines_tx.send(format!("{level} {args}"));
        });
        with_log_sink(sink, || server.run()).unwrap();
    });
    let stopper = stop.recv().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    stopper.stop().unwrap();
    runner.join().unwrap();
    let warnings: Vec<String> = lines
        .try_iter()
        .filter(|l| l.starts_with("WARN server certificate CN=localhost"))
        .collect();
    // At start, then every 100 ms for 1 s: never more often.
    assert!((4..=12).contains(&warnings.len()), "{warnings:#?}");
    assert!(warnings[0].contains("expires on"), "{}", warnings[0]);
    let _ = std::fs::remove_dir_all(&dir);
}
