//! The session state machine (`relay::session::Session`), driven through
//! its public API the way the daemon's event loop drives it, by an
//! arbitrary interleaving of events: client bytes (raw, or from a real
//! rustls client: application data, close_notify, key updates, records cut
//! anywhere), backend bytes, EOFs, closes and resets on either side,
//! sockets that stop taking bytes (WouldBlock) and become writable again,
//! spurious wake-ups, the identity decision, backend connect outcomes, and
//! time passing (deadlines).
//!
//! Input: three setup bytes (see [`Setup`]), then operations: a byte
//! choosing one (see [`Harness::step`]) and its arguments. When the session
//! reports a finished handshake, the next byte is the identity decision.
//! When the input ends, the session is finished: optionally every socket
//! is made to move everything (the cooperative finish), then, if it is
//! still open, the daemon's shutdown, and its deadlines must end it within
//! a few expiries.
//!
//! Invariants, after every step:
//! - nothing reaches the backend before the handshake, the identity
//!   decision and the backend connection; then the header, first;
//! - client bytes reach the backend in order and exactly once, and backend
//!   bytes reach the client in order and exactly once;
//! - the backend sees a clean EOF only after the client's close_notify and
//!   every byte before it;
//! - every end reason has its cause among the events, and a session that
//!   ended stays ended; the client sees close_notify only from a session
//!   that is ending, and no TLS error but an alert.
//!
//! And at the end:
//! - with every socket moving (the cooperative finish): backend bytes up to
//!   its EOF all reach the client, then close_notify; client bytes up to its
//!   close_notify all reach the backend, then EOF; a cut stream is noticed;
//! - every session ends within a few deadline expiries;
//! - a client stream cut short (EOF or reset without close_notify, bytes
//!   that are not TLS) gets the backend a reset, not a clean EOF, unless
//!   nctls began the end itself or the backend no longer reads.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nctls::config::tls::{self, Policy};
use nctls::identity::header::{self, HeaderFields, HeaderKind};
use nctls::relay::session::{
    EndReason, Limits, Readiness, Session, Side, Status, Stream, Tls12Close,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

use super::input::Input;
use super::pki;

/// Plaintext each way per run, at most: keeps a run short.
const MAX_DATA: usize = 256 * 1024;
/// The `--max-record` values a run may choose.
const MAX_RECORDS: [usize; 4] = [512, 1024, 4096, 16384];
/// Deadline expiries a finishing session may take to end.
const END_EXPIRIES: usize = 3;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = Setup::read(&mut input);
    let mut h = Harness::new(setup, input);
    h.drive();
    while !h.input.is_empty() && !h.ended {
        h.step();
    }
    h.finish();
}

/// The run's fixed choices.
///
/// Byte 0: bit 0 TLS 1.2 (else 1.3); bits 1-2 the client's certificate
/// ([`Identity`]); bit 3 `--tls12-close half-close`; bit 4 the backend
/// socket is handed to every pump, even before it may be used; bit 5 no
/// rustls client, raw bytes only; bit 6 the client sends 512-byte records;
/// bit 7 the cooperative finish. Byte 1: bits 0-1 `--max-record`, bits 2-3
/// `--handshake-timeout` (1-4 s), bits 4-5 `--drain-timeout` (1-4 s), bits
/// 6-7 `--idle-timeout` (off, 2, 4, 6 s). Byte 2: bits 0-1
/// `--connect-timeout` (1-4 s), bits 2-3 the backend addresses to try (1-4).
struct Setup {
    tls12: bool,
    identity: Identity,
    eager_backend: bool,
    raw: bool,
    small_records: bool,
    cooperative: bool,
    max_record: usize,
    limits: Limits,
    addresses: u8,
}

/// The certificate the client presents.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Identity {
    /// `client`, issued by the CA.
    Client,
    /// `oper` and its intermediate CA.
    Chain,
    None,
    /// `other`, from a CA nctls does not trust.
    Untrusted,
}

/// Every [`Identity`], in the order of their numbers.
const IDENTITIES: [Identity; 4] = [
    Identity::Client,
    Identity::Chain,
    Identity::None,
    Identity::Untrusted,
];

impl Setup {
    fn read(input: &mut Input) -> Setup {
        let (a, b, c) = (input.byte(), input.byte(), input.byte());
        let secs = |bits: u8| Duration::from_secs(1 + u64::from(bits & 3));
        Setup {
            tls12: a & 1 != 0,
            identity: IDENTITIES[usize::from(a >> 1 & 3)],
            eager_backend: a & 0x10 != 0,
            raw: a & 0x20 != 0,
            small_records: a & 0x40 != 0,
            cooperative: a & 0x80 != 0,
            max_record: MAX_RECORDS[usize::from(b & 3)],
            limits: Limits {
                handshake_timeout: secs(b >> 2),
                connect_timeout: secs(c),
                idle_timeout: match b >> 6 {
                    0 => None,
                    n => Some(Duration::from_secs(2 * u64::from(n))),
                },
                drain_timeout: secs(b >> 4),
                tls12_close: match a & 8 {
                    0 => Tls12Close::Strict,
                    _ => Tls12Close::HalfClose,
                },
            },
            addresses: 1 + (c >> 2 & 3),
        }
    }
}

/// The server configurations, one per `--max-record` choice.
fn server_config(max_record: usize) -> Arc<ServerConfig> {
    static CONFIGS: OnceLock<Vec<Arc<ServerConfig>>> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        MAX_RECORDS
            .iter()
            .map(|&max_record| {
                let policy = Policy {
                    max_record,
                    ..Policy::default()
                };
                let chain = vec![pki::cert(pki::SERVER)];
                let roots = vec![pki::cert(pki::CA)];
                tls::build(chain, pki::key(pki::SERVER_KEY), roots, policy)
                    .expect("the fuzz PKI makes a server configuration")
            })
            .collect()
    });
    let i = MAX_RECORDS
        .iter()
        .position(|&m| m == max_record)
        .expect("a listed size");
    configs[i].clone()
}

/// The client configurations, by version, certificate and record size.
fn client_config(setup: &Setup) -> Arc<ClientConfig> {
    static CONFIGS: OnceLock<Vec<Arc<ClientConfig>>> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| {
        let mut all = Vec::new();
        for small in [false, true] {
            for identity in IDENTITIES {
                for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
                    all.push(Arc::new(make_client_config(version, identity, small)));
                }
            }
        }
        all
    });
    let identity = setup.identity as usize;
    configs[usize::from(setup.small_records) * 8 + identity * 2 + usize::from(setup.tls12)].clone()
}

fn make_client_config(
    version: &'static rustls::SupportedProtocolVersion,
    identity: Identity,
    small_records: bool,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(pki::cert(pki::CA)).expect("the fuzz CA");
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[version])
            .expect("a supported version")
            .with_root_certificates(roots);
    let mut config = match identity {
        Identity::Client => {
            builder.with_client_auth_cert(vec![pki::cert(pki::CLIENT)], pki::key(pki::CLIENT_KEY))
        }
        Identity::Chain => builder.with_client_auth_cert(
            vec![pki::cert(pki::OPER), pki::cert(pki::INTER)],
            pki::key(pki::OPER_KEY),
        ),
        Identity::None => Ok(builder.with_no_client_auth()),
        Identity::Untrusted => {
            builder.with_client_auth_cert(vec![pki::cert(pki::OTHER)], pki::key(pki::OTHER_KEY))
        }
    }
    .expect("the fuzz PKI makes a client configuration");
    if small_records {
        config.max_fragment_size = Some(512);
    }
    config
}

/// One socket as the session sees it; the harness plays the peer.
#[derive(Default)]
struct Sock {
    /// Bytes the peer sent, not read yet.
    input: VecDeque<u8>,
    /// The peer shut its write side: reads end after `input`.
    eof: bool,
    /// The peer closed its socket: writes to it fail.
    gone: bool,
    /// The connection was reset: reads and writes fail at once.
    reset: bool,
    /// What the session wrote.
    output: Vec<u8>,
    /// Bytes that writes take before WouldBlock.
    room: usize,
    /// The session shut its write side: the peer saw a clean EOF.
    fin: bool,
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reset {
            return Err(ErrorKind::ConnectionReset.into());
        }
        if self.input.is_empty() {
            return match self.eof {
                true => Ok(0),
                false => Err(ErrorKind::WouldBlock.into()),
            };
        }
        self.input.read(buf)
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.reset {
            return Err(ErrorKind::ConnectionReset.into());
        }
        if self.gone || self.fin {
            return Err(ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(self.room);
        if n == 0 && !buf.is_empty() {
            return Err(ErrorKind::WouldBlock.into());
        }
        self.room -= n;
        self.output.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream for Sock {
    fn shutdown_write(&mut self) -> io::Result<()> {
        if self.reset {
            return Err(ErrorKind::NotConnected.into());
        }
        self.fin = true;
        Ok(())
    }
}

/// The n-th plaintext byte the client sends, and the backend's: position
/// dependent, so a byte lost, doubled or moved shows.
fn up_byte(n: usize) -> u8 {
    (n % 251) as u8
}

fn down_byte(n: usize) -> u8 {
    (n % 241) as u8 ^ 0x5a
}

struct Harness<'a> {
    input: Input<'a>,
    setup: Setup,
    session: Session,
    /// The TLS client; `None` in raw mode.
    client: Option<ClientConnection>,
    c: Sock,
    b: Sock,
    now: Instant,
    scratch: Vec<u8>,
    header: Vec<u8>,

    // What the event loop knows.
    handshake_done: bool,
    admitted: bool,
    /// A backend connect is under way; addresses left after this one.
    dialing: Option<u8>,
    /// The loop holds a connected backend socket.
    backend_up: bool,
    ended: bool,

    // The client's stream as it really is.
    /// TLS bytes the client made that are not delivered yet.
    wire: VecDeque<u8>,
    produced: usize,
    delivered: usize,
    /// Some of the client's TLS bytes were dropped, never delivered.
    lost_wire: bool,
    sent_up: Vec<u8>,
    /// Where the client's close_notify ends in its TLS bytes, and how much
    /// plaintext came before it.
    close_notify: Option<(usize, usize)>,
    /// How many real TLS bytes were delivered when the first bytes that
    /// are not the client's TLS were.
    garbage_at: Option<usize>,
    /// Key updates the client sent since its last application data.
    key_updates: u8,
    /// The loop reported an error on the client socket.
    reset_reported: bool,
    /// The rustls client failed (it got an alert).
    client_failed: bool,
    sent_down: Vec<u8>,
    received: Vec<u8>,
    saw_close_notify: bool,

    // Causes, for checking end reasons.
    expired: bool,
    shut_down: bool,
    refused: bool,
    gave_up: bool,
    connect_failed: bool,
    connect_reset: bool,
    first_reason: Option<EndReason>,
}

impl<'a> Harness<'a> {
    fn new(setup: Setup, input: Input<'a>) -> Harness<'a> {
        let now = Instant::now();
        let config = server_config(setup.max_record);
        let session =
            Session::new(config, Arc::new(setup.limits.clone()), now).expect("a session starts");
        let client = (!setup.raw).then(|| {
            let name = ServerName::try_from("localhost").expect("a server name");
            let mut client =
                ClientConnection::new(client_config(&setup), name).expect("a client starts");
            client.set_buffer_limit(None);
            client
        });
        let source = "192.0.2.7:40001".parse().expect("an address");
        let header = header::build(HeaderKind::Confd, "admin", source, &HeaderFields::default())
            .expect("a header for admin");
        Harness {
            input,
            setup,
            session,
            client,
            c: Sock {
                room: usize::MAX,
                ..Sock::default()
            },
            b: Sock {
                room: usize::MAX,
                ..Sock::default()
            },
            now,
            scratch: vec![0; 16 * 1024],
            header,
            handshake_done: false,
            admitted: false,
            dialing: None,
            backend_up: false,
            ended: false,
            wire: VecDeque::new(),
            produced: 0,
            delivered: 0,
            lost_wire: false,
            sent_up: Vec::new(),
            close_notify: None,
            garbage_at: None,
            key_updates: 0,
            reset_reported: false,
            client_failed: false,
            sent_down: Vec::new(),
            received: Vec::new(),
            saw_close_notify: false,
            expired: false,
            shut_down: false,
            refused: false,
            gave_up: false,
            connect_failed: false,
            connect_reset: false,
            first_reason: None,
        }
    }

    /// One operation from the input, then the loop's reaction.
    fn step(&mut self) {
        let op = self.input.byte();
        match op % 22 {
            // Client: plaintext, TLS bytes onto the socket, the TLS close.
            0 => {
                let len = 1 + usize::from(self.input.byte()) * 64;
                self.client_write(len);
            }
            1 => {
                let n = usize::from(self.input.byte());
                self.client_flush(if n == 0 { usize::MAX } else { n * 16 });
            }
            2 => self.client_close_notify(),
            3 => {
                // rustls (as BoringSSL) refuses a 33rd key update request
                // with no application data between: a client that does more
                // misbehaves, and is refused, unexplored here.
                if self.key_updates < 32 {
                    if let Some(client) = self.client.as_mut().filter(|_| !self.client_failed) {
                        self.key_updates += u8::from(client.refresh_traffic_keys().is_ok());
                    }
                }
            }
            // Bytes that are not the client's TLS: anything, or an alert
            // record in the clear.
            4 => {
                let len = usize::from(self.input.byte() % 64);
                let bytes = self.input.bytes(len).to_vec();
                self.client_garbage(&bytes);
            }
            5 => {
                let (level, description) = (self.input.byte(), self.input.byte());
                self.client_garbage(&[0x15, 0x03, 0x03, 0x00, 0x02, level, description]);
            }
            6 => {
                self.c.eof = true;
                self.ready(Side::Client, true, false);
            }
            7 => {
                self.c.reset = true;
                if self.input.byte() & 1 == 1 {
                    // The loop saw the error event (it may not read).
                    self.reset_reported = true;
                    let error = io::Error::from(ErrorKind::ConnectionReset);
                    self.session.client_socket_error(Ok(Some(error)));
                }
                self.ready(Side::Client, true, true);
            }
            8 => {
                let n = usize::from(self.input.byte());
                self.client_recv(if n == 0 { usize::MAX } else { n * 64 });
            }
            9 => {
                self.c.room = room(self.input.byte());
                self.ready(Side::Client, false, self.c.room > 0);
            }
            // The connection ends with some of the client's TLS bytes
            // never delivered (perhaps mid-record): lost with it.
            10 => {
                self.pull_wire();
                self.lost_wire |= !self.wire.is_empty();
                self.wire.clear();
                self.c.eof = true;
                self.ready(Side::Client, true, false);
            }
            // Backend.
            11 => {
                let len = 1 + usize::from(self.input.byte()) * 64;
                self.backend_write(len);
            }
            12 => {
                self.b.eof = true;
                self.backend_event(true, false);
            }
            13 => {
                // ConfD closes its socket whole.
                self.b.eof = true;
                self.b.gone = true;
                self.backend_event(true, true);
            }
            14 => {
                self.b.reset = true;
                self.backend_event(true, true);
            }
            15 => {
                self.b.room = room(self.input.byte());
                self.backend_event(false, self.b.room > 0);
            }
            16 => {
                let outcome = self.input.byte();
                self.connect_outcome(outcome);
            }
            // Time and the loop.
            17 => {
                let by = Duration::from_millis(50 * u64::from(self.input.byte()));
                self.now += by;
                self.expire();
            }
            18 => {
                self.shut_down = true;
                self.session.shutdown(self.now);
            }
            19 => {
                self.ready(Side::Client, true, true);
                self.ready(Side::Backend, true, true);
            }
            20 => self.exchange(),
            _ => {
                // A timer wake-up now: a deadline not reached changes nothing.
                let due = self.session.deadline().is_some_and(|d| d <= self.now);
                self.expired |= due;
                let before = (self.session.state(), self.session.end_reason().cloned());
                self.session.on_deadline(self.now);
                let after = (self.session.state(), self.session.end_reason().cloned());
                assert!(
                    due || before == after,
                    "a deadline not reached changed the session"
                );
            }
        }
        self.drive();
    }

    fn client_write(&mut self, len: usize) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if self.client_failed || self.close_notify.is_some() || self.sent_up.len() >= MAX_DATA {
            return;
        }
        let start = self.sent_up.len();
        let data: Vec<u8> = (start..start + len).map(up_byte).collect();
        if client.writer().write_all(&data).is_ok() {
            self.sent_up.extend_from_slice(&data);
            self.key_updates = 0;
        }
    }

    fn client_close_notify(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        if self.client_failed || self.close_notify.is_some() {
            return;
        }
        if client.is_handshaking() {
            // rustls would send it in the clear: that is an alert op.
            return;
        }
        client.send_close_notify();
        self.pull_wire();
        self.close_notify = Some((self.produced, self.sent_up.len()));
    }

    /// The client's new TLS bytes into `wire`.
    fn pull_wire(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while client.wants_write() {
            if client.write_tls(&mut out).is_err() {
                break;
            }
        }
        self.produced += out.len();
        self.wire.extend(out);
    }

    /// Up to `n` of the client's TLS bytes onto its socket.
    fn client_flush(&mut self, n: usize) {
        self.pull_wire();
        if self.c.eof || self.c.reset {
            return;
        }
        let n = n.min(self.wire.len());
        self.c.input.extend(self.wire.drain(..n));
        self.delivered += n;
        if n > 0 {
            self.ready(Side::Client, true, false);
        }
    }

    fn client_garbage(&mut self, bytes: &[u8]) {
        if self.c.eof || self.c.reset || bytes.is_empty() {
            return;
        }
        self.garbage_at.get_or_insert(self.delivered);
        self.c.input.extend(bytes);
        self.ready(Side::Client, true, false);
    }

    /// The client reads up to `n` of the session's bytes.
    fn client_recv(&mut self, n: usize) {
        let Some(client) = self.client.as_mut() else {
            self.c.output.clear();
            return;
        };
        let mut budget = n.min(self.c.output.len());
        while budget > 0 && !self.client_failed {
            let mut from = &self.c.output[..budget];
            let Ok(taken) = client.read_tls(&mut from) else {
                break;
            };
            self.c.output.drain(..taken);
            budget -= taken;
            if let Err(e) = client.process_new_packets() {
                assert!(
                    matches!(e, rustls::Error::AlertReceived(_)),
                    "the session sent the client broken TLS: {e:?}"
                );
                self.client_failed = true;
                break;
            }
            let mut buf = [0u8; 4096];
            loop {
                match client.reader().read(&mut buf) {
                    Ok(0) => {
                        self.saw_close_notify = true;
                        break;
                    }
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            if taken == 0 {
                break;
            }
        }
    }

    fn backend_write(&mut self, len: usize) {
        if self.b.eof || self.b.reset || self.sent_down.len() >= MAX_DATA {
            return;
        }
        let start = self.sent_down.len();
        let data: Vec<u8> = (start..start + len).map(down_byte).collect();
        self.b.input.extend(&data);
        self.sent_down.extend_from_slice(&data);
        self.backend_event(true, false);
    }

    /// A readiness event for one socket, as the loop reports it: the one
    /// place the target calls `Session::set_ready`.
    fn ready(&mut self, side: Side, readable: bool, writable: bool) {
        self.session.set_ready(
            side,
            Readiness {
                read: readable,
                write: writable,
            },
        );
    }

    /// Readiness of the backend socket, once the loop has one.
    fn backend_event(&mut self, readable: bool, writable: bool) {
        if self.backend_up || self.setup.eager_backend {
            self.ready(Side::Backend, readable, writable);
        }
    }

    /// What the daemon does with the outcome of a backend connect.
    fn connect_outcome(&mut self, outcome: u8) {
        let Some(left) = self.dialing else {
            return;
        };
        match outcome % 4 {
            0 => {
                self.dialing = None;
                self.backend_up = true;
                self.session.backend_connect_done(Ok(()), self.now);
                self.ready(Side::Backend, false, true);
            }
            1 => {
                // Connected, then reset before the loop looked.
                self.dialing = None;
                self.connect_reset = true;
                let error = io::Error::from(ErrorKind::ConnectionReset);
                self.session.backend_connect_done(Err(error), self.now);
            }
            2 => self.next_address(left, EndReason::BackendUnreachable("refused".into())),
            _ => {
                self.dialing = None;
                self.connect_failed = true;
                let error = io::Error::from(ErrorKind::PermissionDenied);
                self.session.backend_connect_done(Err(error), self.now);
            }
        }
    }

    /// The daemon's `dial`: the next address, or the end.
    fn next_address(&mut self, left: u8, exhausted: EndReason) {
        if left > 0 {
            self.dialing = Some(left - 1);
            self.session.backend_attempt(self.now);
        } else {
            self.dialing = None;
            self.gave_up = true;
            self.session.backend_gave_up(exhausted, self.now);
        }
    }

    /// The daemon's timers: every deadline that has passed, in turn.
    fn expire(&mut self) {
        for _ in 0..4 {
            let Some(deadline) = self.session.deadline() else {
                return;
            };
            if deadline > self.now || self.ended {
                return;
            }
            self.expired = true;
            match self.dialing {
                Some(left) if self.session.connect_expired(self.now) => {
                    self.next_address(left, EndReason::ConnectTimeout)
                }
                _ => self.session.on_deadline(self.now),
            }
            self.drive();
        }
    }

    /// The loop's `drive`: pump until the session waits; decide the
    /// identity when the handshake is done.
    fn drive(&mut self) {
        for _ in 0..4 {
            if self.ended {
                break;
            }
            let backend = match self.backend_up || self.setup.eager_backend {
                true => Some(&mut self.b),
                false => None,
            };
            let status = self
                .session
                .pump(&mut self.c, backend, &mut self.scratch, self.now);
            match status {
                Status::HandshakeDone => {
                    assert!(!self.handshake_done, "the handshake finished twice");
                    self.handshake_done = true;
                    self.identify();
                }
                Status::Ended => self.ended = true,
                Status::Continue => break,
            }
        }
        self.check();
    }

    /// The identity decision: mostly admit (the next input byte says).
    fn identify(&mut self) {
        let decision = self.input.byte();
        if decision % 8 == 7 {
            self.refused = true;
            self.session
                .refuse("refused by the fuzz input".into(), self.now);
            return;
        }
        self.admitted = true;
        let header = self.header.clone();
        self.session.admit(&header, self.now);
        self.dialing = Some(self.setup.addresses - 1);
        self.session.backend_attempt(self.now);
    }

    /// Moves bytes both ways until nothing changes, as a loop with every
    /// event delivered would.
    fn exchange(&mut self) {
        for _ in 0..64 {
            let before = self.progress();
            self.client_flush(usize::MAX);
            self.drive();
            self.client_recv(usize::MAX);
            if self.ended || self.progress() == before {
                break;
            }
        }
    }

    fn progress(&self) -> [usize; 7] {
        [
            self.produced,
            self.c.input.len(),
            self.c.output.len(),
            self.b.input.len(),
            self.b.output.len(),
            self.received.len(),
            usize::from(self.saw_close_notify),
        ]
    }

    /// The client's close_notify is all on its socket, with only its own
    /// TLS bytes before it.
    fn clean_close(&self) -> bool {
        self.close_notify.is_some_and(|(end, _)| {
            self.delivered >= end && self.garbage_at.is_none_or(|g| g >= end)
        })
    }

    /// The client's stream was cut short: it ended, was reset or carries
    /// bytes that are not TLS, before a clean close_notify the session saw.
    fn truncated(&self) -> bool {
        let cut = self.c.eof || self.c.reset || self.reset_reported || self.garbage_at.is_some();
        cut && !self.clean_close() && self.first_reason != Some(EndReason::ClientCloseNotify)
    }

    /// Whether the events so far explain `reason`.
    fn explains(&self, reason: &EndReason) -> bool {
        let client_broke = self.c.eof || self.c.reset || self.reset_reported;
        match reason {
            EndReason::BackendClosed => self.b.eof,
            EndReason::BackendReset(_) => self.b.reset || self.b.gone || self.connect_reset,
            EndReason::ClientCloseNotify => self.clean_close(),
            EndReason::ClientEof => self.c.eof && !self.clean_close(),
            EndReason::ClientReset(_) => self.c.reset || self.reset_reported,
            EndReason::TlsError(_) => self.garbage_at.is_some(),
            EndReason::HandshakeFailed(_) => {
                self.setup.raw
                    || matches!(self.setup.identity, Identity::None | Identity::Untrusted)
                    || self.garbage_at.is_some()
                    || client_broke
            }
            EndReason::HandshakeTimeout | EndReason::IdleTimeout | EndReason::DrainTimeout => {
                self.expired
            }
            EndReason::ConnectTimeout => self.expired,
            EndReason::Refused(_) => self.refused,
            EndReason::BackendUnreachable(_) => self.gave_up || self.connect_failed,
            EndReason::Shutdown => self.shut_down,
            // The target never calls `Session::fail` (a driver's own failure).
            EndReason::InternalError(_) => false,
        }
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let reason = self.session.end_reason().cloned();
        if self.first_reason.is_none() {
            if let Some(r) = &reason {
                assert!(self.explains(r), "end reason {r:?} without its cause");
                self.first_reason = Some(r.clone());
            }
        }
        if self.ended {
            assert_eq!(self.session.state(), "ended");
            assert_eq!(
                self.session.deadline(),
                None,
                "an ended session has no deadline"
            );
            assert!(reason.is_some(), "an ended session says why");
        }
        if self.saw_close_notify {
            assert!(
                reason.is_some(),
                "close_notify from a session that is not ending"
            );
        }

        // Client → backend: nothing before the header, then the client's
        // bytes in order, exactly once.
        let out = &self.b.output;
        if !(self.admitted && self.backend_up) {
            assert!(
                out.is_empty(),
                "bytes reached the backend before it was connected"
            );
        }
        let h = self.header.len();
        if out.len() <= h {
            assert!(self.header.starts_with(out), "the header comes first");
        } else {
            assert!(out.starts_with(&self.header), "the header comes first");
            assert!(
                self.sent_up.starts_with(&out[h..]),
                "client bytes reached the backend out of order, twice or made up"
            );
        }
        // The backend's clean EOF: after the client's close_notify and
        // every byte before it.
        if self.b.fin && !self.b.reset {
            assert!(
                self.clean_close(),
                "a clean EOF to the backend without a clean close_notify"
            );
            let (_, before_close) = self.close_notify.expect("a close_notify");
            assert!(
                out.get(h..) == Some(&self.sent_up[..before_close]),
                "a clean EOF to the backend before every byte the client sent"
            );
        }

        // Backend → client: in order, exactly once, none before relaying.
        assert!(
            self.sent_down.starts_with(&self.received),
            "backend bytes reached the client out of order, twice or made up"
        );
        if !self.backend_up {
            assert!(
                self.received.is_empty(),
                "backend bytes before the backend was connected"
            );
        }
        let (up, down) = self.session.bytes();
        let relayed_up = out.len().saturating_sub(h);
        assert!(
            up as usize >= relayed_up && up as usize <= self.sent_up.len(),
            "bytes in"
        );
        assert!(
            down as usize >= self.received.len() && down as usize <= self.sent_down.len(),
            "bytes out"
        );
    }

    /// After the input: the cooperative finish if chosen, then the end.
    fn finish(&mut self) {
        if self.setup.cooperative && !self.ended {
            self.c.room = usize::MAX;
            self.b.room = usize::MAX;
            self.ready(Side::Client, true, true);
            self.backend_event(true, true);
            self.exchange();
            self.check_cooperative();
        }
        if !self.ended && self.session.end_reason().is_none() {
            self.shut_down = true;
            self.session.shutdown(self.now);
            self.drive();
        }
        for _ in 0..END_EXPIRIES {
            if self.ended {
                break;
            }
            let deadline = self
                .session
                .deadline()
                .expect("a session that is ending has a deadline");
            self.now = self.now.max(deadline);
            self.expire();
        }
        assert!(
            self.ended,
            "the session did not end within {END_EXPIRIES} expiries"
        );

        // A cut client stream gets the backend a reset, not a clean EOF,
        // unless nctls ended the session itself (a deadline, the shutdown,
        // a refusal: nothing more goes to the backend from then on, and
        // what went may end with a FIN) or the backend no longer reads.
        if self.truncated() && self.backend_up && !self.nctls_ended() && !self.backend_broke() {
            assert!(
                self.session.backend_needs_reset(),
                "a cut client stream ({:?} first): the backend, still reading, gets a clean EOF",
                self.first_reason
            );
        }
    }

    /// nctls began the end itself: a deadline, the shutdown, a refusal, no
    /// backend to be had.
    fn nctls_ended(&self) -> bool {
        self.expired || self.shut_down || self.refused || self.gave_up || self.connect_failed
    }

    /// The backend connection failed or the backend closed its socket.
    fn backend_broke(&self) -> bool {
        self.b.reset || self.b.gone || self.connect_reset
    }

    /// With every socket moving, everything that can arrive has arrived.
    fn check_cooperative(&self) {
        if !self.backend_up {
            return;
        }
        let nctls_ended = self.nctls_ended();
        let backend_broke = self.backend_broke();
        let client_broke = self.c.reset || self.reset_reported || self.client_failed;
        if self.truncated() && !nctls_ended && !backend_broke {
            assert!(
                self.session.end_reason().is_some(),
                "a cut client stream went unnoticed"
            );
        }
        let strict_close = self.close_notify.is_some()
            && self.setup.tls12
            && self.setup.limits.tls12_close == Tls12Close::Strict;
        let down_lossy =
            nctls_ended || backend_broke || client_broke || self.truncated() || strict_close;
        if self.b.eof && !down_lossy {
            assert!(
                self.received == self.sent_down,
                "backend bytes before its EOF did not all reach the client"
            );
            assert!(
                self.saw_close_notify,
                "no close_notify after the backend's EOF"
            );
        }
        let all_sent = self.wire.is_empty()
            && !self.lost_wire
            && self
                .client
                .as_ref()
                .is_some_and(|c| !c.is_handshaking() && !c.wants_write());
        let up_lossy = nctls_ended || backend_broke || client_broke || self.garbage_at.is_some();
        if all_sent && !up_lossy {
            let (sent, clean_eof) = match self.close_notify {
                Some((_, before)) => (&self.sent_up[..before], self.clean_close()),
                None => (&self.sent_up[..], false),
            };
            assert!(
                self.b.output.get(self.header.len()..) == Some(sent),
                "client bytes did not all reach the backend"
            );
            assert_eq!(
                self.b.fin, clean_eof,
                "the backend's EOF follows the client's close_notify"
            );
        }
    }
}

/// A socket's room for writes from an input byte: none, some, or plenty.
fn room(b: u8) -> usize {
    match b {
        0 => 0,
        255 => usize::MAX,
        n => usize::from(n) * 64,
    }
}
