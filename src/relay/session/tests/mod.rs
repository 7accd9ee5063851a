//! Every transition of the close state machine, over in-memory sockets
//! with a real rustls client on the other end: the harness here, the
//! cases in `rows.rs`.

use super::pump::OUTPUT_LIMIT;
use super::*;
use crate::test_pki as pki;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::collections::VecDeque;

/// One socket as the session sees it.
struct Mem {
    input: VecDeque<u8>,
    eof: bool,
    reset: bool,
    output: Vec<u8>,
    /// How many more bytes writes accept before WouldBlock.
    room: usize,
    write_shut: bool,
}

impl Mem {
    fn new() -> Mem {
        Mem {
            input: VecDeque::new(),
            eof: false,
            reset: false,
            output: Vec::new(),
            room: usize::MAX,
            write_shut: false,
        }
    }
}

impl Read for Mem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reset {
            return Err(ErrorKind::ConnectionReset.into());
        }
        if self.input.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(ErrorKind::WouldBlock.into())
            };
        }
        self.input.read(buf)
    }
}

impl Write for Mem {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.reset || self.write_shut {
            return Err(ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(self.room);
        if n == 0 {
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

impl Stream for Mem {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.write_shut = true;
        Ok(())
    }
}

const HEADER: &[u8] = b"[admin;127.0.0.1/1;ssh;9000;100;;/var/confd/homes/admin;;]\n";

struct Rig {
    session: Session,
    client: ClientConnection,
    /// The session's client socket; `client` talks through it.
    c: Mem,
    /// The session's backend socket; the test plays the backend.
    b: Mem,
    backend_connected: bool,
    now: Instant,
    scratch: Vec<u8>,
    status: Status,
    received: Vec<u8>,
    client_saw_close_notify: bool,
    client_error: Option<rustls::Error>,
}

fn limits(tls12_close: Tls12Close) -> Limits {
    Limits {
        handshake_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        idle_timeout: None,
        drain_timeout: Duration::from_secs(5),
        tls12_close,
    }
}

impl Rig {
    fn new(version: &'static rustls::SupportedProtocolVersion, limits: Limits) -> Rig {
        Rig::with_chain(version, limits, 0, None)
    }

    /// The client sends `padding` extra copies of the CA certificate
    /// after its own (a long chain makes a large handshake message). Its
    /// certificate is issued by `stranger` when given, a CA the session
    /// does not trust, else by the session's CA.
    fn with_chain(
        version: &'static rustls::SupportedProtocolVersion,
        limits: Limits,
        padding: usize,
        stranger: Option<&pki::Ca>,
    ) -> Rig {
        let ca = pki::Ca::new("CA");
        let server = ca.server();
        let user = stranger.unwrap_or(&ca).client("admin");
        let server_config = crate::config::tls::build(
            vec![server.der().to_vec().into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der())),
            vec![ca.der().to_vec().into()],
            crate::config::tls::Policy::default(),
        )
        .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().to_vec().into()).unwrap();
        let client_config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(
                    std::iter::once(user.der().to_vec().into())
                        .chain((0..padding).map(|_| ca.der().to_vec().into()))
                        .collect(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(user.key_der())),
                )
                .unwrap();
        let mut client = ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        client.set_buffer_limit(None);
        let now = Instant::now();
        Rig {
            session: Session::new(server_config, Arc::new(limits), now).unwrap(),
            client,
            c: Mem::new(),
            b: Mem::new(),
            backend_connected: false,
            now,
            scratch: vec![0; 16 * 1024],
            status: Status::Continue,
            received: Vec::new(),
            client_saw_close_notify: false,
            client_error: None,
        }
    }

    fn tls13() -> Rig {
        Rig::new(&rustls::version::TLS13, limits(Tls12Close::Strict))
    }

    /// A relaying session: handshake done, header queued, backend up.
    fn relaying(version: &'static rustls::SupportedProtocolVersion, policy: Tls12Close) -> Rig {
        let mut rig = Rig::new(version, limits(policy));
        rig.run();
        assert_eq!(rig.status, Status::HandshakeDone);
        rig.session.admit(HEADER, rig.now);
        rig.connect();
        rig.run();
        assert_eq!(rig.b.output, HEADER);
        rig.b.output.clear();
        rig
    }

    fn connect(&mut self) {
        self.session.backend_connected(self.now);
        self.backend_connected = true;
    }

    /// Moves bytes between the rustls client and the session until
    /// nothing changes, as an event loop with spurious wake-ups would.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let before = (
                self.c.input.len(),
                self.c.output.len(),
                self.b.output.len(),
                self.b.input.len(),
            );
            if !self.c.reset && !self.c.eof {
                self.client.write_tls(&mut self.c.input).unwrap();
            }
            self.session.set_ready(Side::Client, Readiness::BOTH);
            self.session.set_ready(Side::Backend, Readiness::BOTH);
            let backend = self.backend_connected.then_some(&mut self.b);
            self.status = self
                .session
                .pump(&mut self.c, backend, &mut self.scratch, self.now);
            self.client_read();
            let after = (
                self.c.input.len(),
                self.c.output.len(),
                self.b.output.len(),
                self.b.input.len(),
            );
            if before == after && !self.client.wants_write() {
                return;
            }
        }
        panic!("no quiescence");
    }

    fn client_read(&mut self) {
        while !self.c.output.is_empty() && self.client.wants_read() {
            let mut rd = &self.c.output[..];
            let n = self.client.read_tls(&mut rd).unwrap();
            self.c.output.drain(..n);
            if let Err(e) = self.client.process_new_packets() {
                self.client_error = Some(e);
                self.c.output.clear();
                return;
            }
            let mut buf = [0u8; 8192];
            loop {
                match self.client.reader().read(&mut buf) {
                    Ok(0) => {
                        self.client_saw_close_notify = true;
                        break;
                    }
                    Ok(n) => self.received.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
    }

    fn client_send(&mut self, data: &[u8]) {
        self.client.writer().write_all(data).unwrap();
    }

    fn client_close_notify(&mut self) {
        self.client.send_close_notify();
    }

    fn backend_send(&mut self, data: &[u8]) {
        self.b.input.extend(data);
    }

    fn reason(&self) -> EndReason {
        self.session.end_reason().cloned().expect("an end reason")
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.on_deadline(self.now);
        self.run();
    }
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

mod rows;
