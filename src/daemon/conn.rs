//! One connection, driven by socket events and a clock: a [`Session`], the
//! client socket, the backend connection (dialled address by address, or a
//! socket an embedder connected), and who the client turned out to be.
//!
//! Its users own the event loop: the daemon drives one connection per
//! client in its slot table, the C API's `nctls_conn` one connection with
//! a `mio::Poll` of its own. Either one calls [`Connection::run`] until it
//! says [`Step::Wait`], then waits for the events of the connection's two
//! tokens ([`Connection::on_event`]) or its [`Connection::deadline`]
//! ([`Connection::on_deadline`]). Policy stays with the user: who the
//! client is ([`Step::Identify`], then [`Connection::admit`] or
//! [`Connection::refuse`]), where the backend is, and what is logged.
//!
//! The client socket only has to be a connected (or connecting) TCP
//! stream: accepted from a listener, handed over by a C program, or
//! connected out by nctls, which stays the TLS server either way (RFC 8071
//! call home). A socket still connecting reads and writes as "would block"
//! until it is connected, then gets its event like any other.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::CertificateDer;

use crate::daemon::backend::{self, Attempt, BackendStream, Dialer};
use crate::daemon::hooks::{debug, SessionEnd};
use crate::daemon::sys;
use crate::identity::header::{self, Accounts, HeaderKind};
use crate::identity::rules::Peer;
use crate::relay::session::{Readiness, Session, Side, Status, Stream};

impl Stream for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// The poll tokens of a connection's two sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The client socket's.
    pub client: Token,
    /// The backend socket's, whichever address it is connecting to.
    pub backend: Token,
}

/// What the connection's owner does next, after [`Connection::run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing more can be done now: wait for an event on one of the
    /// connection's tokens or for its deadline.
    Wait,
    /// The handshake is done and the client certificate verified: decide
    /// who the client is ([`Connection::chain`]), then call
    /// [`Connection::admit`] or [`Connection::refuse`].
    Identify,
    /// The backend connection is up: the session has begun (told once).
    Started,
    /// The session is over: call [`Connection::finish`].
    Ended,
}

/// Where an admitted session's backend connection comes from.
pub enum BackendSource {
    /// The backend's addresses, tried in order (the daemon; the C API
    /// without a backend descriptor).
    Dial(Dialer),
    /// A socket the embedder connected (the C API's `backend_fd`).
    Given(BackendStream),
}

enum Backend {
    None,
    Connecting(BackendStream),
    Connected(BackendStream),
}

/// One client connection and everything it leads to, from
/// [`Connection::new`] (the socket accepted, handed over or connecting out)
/// until [`Step::Ended`], when [`Connection::finish`] closes both sockets
/// and returns the session's [`SessionEnd`]. Its [`Session`] decides how it
/// ends; the connection owns the sockets, their poll registrations and the
/// backend connects (see the module documentation).
pub struct Connection {
    session: Session,
    client: TcpStream,
    client_addr: SocketAddr,
    tokens: Tokens,
    backend: Backend,
    /// Which backend address to try next, when dialling.
    dialer: Option<Dialer>,
    /// The address the backend connection reached, once it is up.
    backend_peer: Option<String>,
    /// The client certificate's subject and fingerprint, once known.
    peer: Option<Peer>,
    user: Option<String>,
    /// The backend connection came up and [`Step::Started`] is still to be told.
    started: bool,
}

impl Connection {
    /// Takes over a client socket for `session`: no Nagle delay, TCP
    /// keepalive after `keepalive` of silence (`None`: off), registered for
    /// both ways under `tokens.client`. On error the socket is handed back
    /// untouched by the registry.
    pub fn new(
        session: Session,
        client: TcpStream,
        client_addr: SocketAddr,
        tokens: Tokens,
        keepalive: Option<Duration>,
        registry: &Registry,
    ) -> Result<Connection, (io::Error, TcpStream)> {
        let mut client = client;
        let _ = client.set_nodelay(true);
        set_keepalive(&client, keepalive);
        if let Err(e) = registry.register(
            &mut client,
            tokens.client,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return Err((e, client));
        }
        Ok(Connection {
            session,
            client,
            client_addr,
            tokens,
            backend: Backend::None,
            dialer: None,
            backend_peer: None,
            peer: None,
            user: None,
            started: false,
        })
    }

    /// Does everything that can be done without blocking; what to do next.
    pub fn run(&mut self, scratch: &mut [u8], now: Instant) -> Step {
        if std::mem::take(&mut self.started) {
            return Step::Started;
        }
        let backend = match &mut self.backend {
            Backend::Connected(socket) => Some(socket),
            Backend::None | Backend::Connecting(_) => None,
        };
        match self.session.pump(&mut self.client, backend, scratch, now) {
            Status::Continue => Step::Wait,
            Status::HandshakeDone => {
                if self.peer.is_none() {
                    self.peer = self.chain().first().map(|c| Peer::of(c));
                }
                Step::Identify
            }
            Status::Ended => Step::Ended,
        }
    }

    /// Applies what the poller reported for one of the two sockets (run
    /// afterwards). Stale and spurious events are harmless.
    pub fn on_event(&mut self, side: Side, event: &Event, registry: &Registry, now: Instant) {
        let ready = Readiness {
            read: event.is_readable() || event.is_read_closed() || event.is_error(),
            write: event.is_writable() || event.is_write_closed() || event.is_error(),
        };
        if side == Side::Client {
            if event.is_error() {
                // Also while backpressure keeps the client from being read.
                self.session.client_socket_error(self.client.take_error());
            }
            self.session.set_ready(Side::Client, ready);
            return;
        }
        if let Backend::Connecting(socket) = &self.backend {
            let Some(result) = socket.connect_result() else {
                return;
            };
            if backend::is_address_failure(&result) {
                if let (Some(dialer), Err(e)) = (self.dialer.as_mut(), &result) {
                    dialer.failed(e);
                }
                self.dial(registry, now);
                return;
            }
            self.connected(result, now);
        }
        self.session.set_ready(Side::Backend, ready);
    }

    /// When [`Connection::on_deadline`] is due, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.session.deadline()
    }

    /// Acts on the deadline (a stale call is ignored; run afterwards): a
    /// backend address that did not answer in time gives way to the next,
    /// any other deadline is the session's.
    pub fn on_deadline(&mut self, registry: &Registry, now: Instant) {
        if self.session.connect_expired(now) {
            if let Some(dialer) = self.dialer.as_mut() {
                dialer.timed_out();
                self.dial(registry, now);
                return;
            }
        }
        self.session.on_deadline(now);
    }

    /// The client's verified certificate chain, end-entity first (empty
    /// before the handshake is done).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        self.session.peer_certificates().unwrap_or(&[])
    }

    /// The client's address, as given to [`Connection::new`].
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Admits the client as `user`: `header` goes to the backend before
    /// any client byte, and the backend connection starts (run afterwards).
    pub fn admit(
        &mut self,
        user: String,
        header: &[u8],
        source: BackendSource,
        registry: &Registry,
        now: Instant,
    ) {
        self.user = Some(user);
        self.session.admit(header, now);
        match source {
            BackendSource::Dial(dialer) => {
                self.dialer = Some(dialer);
                self.dial(registry, now);
            }
            BackendSource::Given(mut socket) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                match registry.register(&mut socket, self.tokens.backend, interest) {
                    Ok(()) => {
                        self.backend = Backend::Connected(socket);
                        self.started = true;
                        self.session.backend_connected(now);
                    }
                    Err(e) => self
                        .session
                        .fail(format!("cannot register the backend socket: {e}"), now),
                }
            }
        }
    }

    /// Refuses the client: close_notify, the backend never contacted.
    pub fn refuse(&mut self, why: String, now: Instant) {
        self.session.refuse(why, now);
    }

    /// Ends the session with close_notify (daemon stop, `nctls_conn_stop`).
    pub fn shutdown(&mut self, now: Instant) {
        self.session.shutdown(now);
    }

    /// nctls cannot drive this connection any more (its poll failed): the
    /// session ends with an internal error.
    pub fn fail(&mut self, why: String, now: Instant) {
        self.session.fail(why, now);
    }

    /// The session, for what it tells (state, bytes, TLS, age).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The client certificate's subject and fingerprint, once the
    /// handshake is done.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref()
    }

    /// The user the session runs as, once admitted.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The backend address that serves the session, once connected.
    pub fn backend_peer(&self) -> Option<&str> {
        self.backend_peer.as_deref()
    }

    /// Closes both sockets (the backend's with a reset after a truncated
    /// session, so it cannot take it for a clean end); what happened.
    pub fn finish(mut self, registry: &Registry, now: Instant) -> SessionEnd {
        let _ = registry.deregister(&mut self.client);
        let reason = self.session.end_reason().cloned();
        let truncated = self.session.backend_needs_reset();
        if let Backend::Connecting(socket) | Backend::Connected(socket) = &mut self.backend {
            socket.release(registry, truncated);
        }
        let (bytes_in, bytes_out) = self.session.bytes();
        SessionEnd {
            client: self.client_addr,
            // A refused handshake: the certificate the client presented.
            peer: self
                .peer
                .or_else(|| self.session.client_certificate().map(|c| Peer::of(c))),
            user: self.user,
            tls: self.session.tls_description(),
            backend: self.backend_peer,
            bytes_in,
            bytes_out,
            duration: now.duration_since(self.session.started()),
            silent: self.session.closed_silently(),
            reason,
        }
    }

    /// Starts connecting to the next backend address (dropping the attempt
    /// before it), or ends the session when none is left.
    fn dial(&mut self, registry: &Registry, now: Instant) {
        let Some(dialer) = self.dialer.as_mut() else {
            return;
        };
        if let Backend::Connecting(mut old) = std::mem::replace(&mut self.backend, Backend::None) {
            let _ = registry.deregister(&mut old);
        }
        let token = self.tokens.backend;
        match dialer.next(|s| registry.register(s, token, Interest::READABLE | Interest::WRITABLE))
        {
            Attempt::Started(socket) => {
                self.backend = Backend::Connecting(socket);
                self.session.backend_attempt(now);
            }
            Attempt::Failed(reason) => self.session.backend_gave_up(reason, now),
        }
    }

    /// The dialled connect has an outcome other than "try the next address".
    fn connected(&mut self, result: io::Result<()>, now: Instant) {
        if let Backend::Connecting(socket) = std::mem::replace(&mut self.backend, Backend::None) {
            socket.set_nodelay();
            self.backend_peer = self.dialer.as_ref().and_then(Dialer::current);
            self.backend = Backend::Connected(socket);
        }
        // Connected, then reset before we looked: the session ends as
        // backend-reset, and never began.
        self.started = result.is_ok();
        self.session.backend_connect_done(result, now);
    }
}

/// The identity decision made whole: the user, or why there is none, and
/// the header that tells the backend who the client is. `Ok` admits,
/// `Err(why)` refuses.
pub fn header_for(
    user: Result<String, String>,
    kind: HeaderKind,
    accounts: &Accounts,
    client: SocketAddr,
) -> Result<(String, Vec<u8>), String> {
    let user = user?;
    let header = header::build(kind, &user, client, accounts.fields_for(&user))
        .map_err(|why| format!("header field unusable: {why}"))?;
    Ok((user, header))
}

/// TCP keepalive on a client socket, so a client that vanished without FIN
/// or RST (power loss, a NAT dropping state) does not keep its backend
/// session, and its locks, forever.
fn set_keepalive(client: &impl AsRawFd, idle: Option<Duration>) {
    if let Some(idle) = idle {
        if let Err(e) = sys::set_keepalive(client.as_raw_fd(), idle) {
            debug!("cannot set TCP keepalive: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::session::{EndReason, Limits, Tls12Close};
    use crate::test_pki as pki;
    use mio::net::UnixStream;
    use mio::{Events, Poll};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::io::{Read, Write};
    use std::sync::Arc;

    /// Call home's shape (RFC 8071): nctls connects out to the NETCONF
    /// client, which sends the ClientHello, and is served exactly like an
    /// accepted client: the connection is handed its socket while the
    /// connect is still under way.
    #[test]
    fn an_outbound_client_socket_is_served_like_an_accepted_one() {
        let ca = pki::Ca::new("CA");
        let (server, user) = (ca.server(), ca.client("admin"));
        let server_config = crate::config::tls::build(
            vec![server.der().to_vec().into()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der())),
            vec![ca.der().to_vec().into()],
            crate::config::tls::Policy::default(),
        )
        .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().to_vec().into()).unwrap();
        let client_config = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![user.der().to_vec().into()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(user.key_der())),
            )
            .unwrap(),
        );
        let wait = Duration::from_secs(20);

        // The NETCONF client listens (as on port 4335) and is the TLS client.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let netconf_client = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(wait)).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let tls = rustls::ClientConnection::new(client_config, name).unwrap();
            let mut stream = rustls::StreamOwned::new(tls, sock);
            stream.write_all(b"hello").unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).unwrap(); // to the server's close_notify
            stream.conn.send_close_notify();
            stream.flush().unwrap();
            got
        });
        // The backend: the other end of a socket pair, echoing in upper case.
        let (backend, theirs) = UnixStream::pair().unwrap();
        let mut theirs = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(theirs));
        theirs.set_nonblocking(false).unwrap();
        theirs.set_read_timeout(Some(wait)).unwrap();
        let confd = std::thread::spawn(move || {
            let mut got = [0u8; 5];
            theirs.read_exact(&mut got).unwrap();
            theirs.write_all(&got.to_ascii_uppercase()).unwrap();
            // Then it closes, like ConfD after <close-session>.
            got
        });

        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let tokens = Tokens {
            client: Token(0),
            backend: Token(1),
        };
        let limits = Arc::new(Limits {
            handshake_timeout: wait,
            connect_timeout: wait,
            idle_timeout: None,
            drain_timeout: wait,
            tls12_close: Tls12Close::Strict,
        });
        let start = Instant::now();
        let session = Session::new(server_config, limits, start).unwrap();
        let outbound = TcpStream::connect(addr).unwrap();
        let mut conn = Connection::new(session, outbound, addr, tokens, None, poll.registry())
            .map_err(|(e, _)| e)
            .unwrap();
        let mut backend = Some(BackendStream::Unix(backend));
        let (mut scratch, mut steps) = (vec![0; 16 * 1024], Vec::new());
        loop {
            let now = Instant::now();
            assert!(now < start + wait, "no end after {steps:?}");
            match conn.run(&mut scratch, now) {
                Step::Wait => {}
                Step::Ended => break,
                step @ Step::Identify => {
                    steps.push(step);
                    assert_eq!(conn.peer().unwrap().subject, "CN=admin");
                    let source = BackendSource::Given(backend.take().unwrap());
                    conn.admit("admin".into(), b"", source, poll.registry(), now);
                    continue;
                }
                step @ Step::Started => {
                    steps.push(step);
                    continue;
                }
            }
            poll.poll(&mut events, Some(Duration::from_millis(500)))
                .unwrap();
            for event in events.iter() {
                let side = if event.token() == tokens.client {
                    Side::Client
                } else {
                    Side::Backend
                };
                conn.on_event(side, event, poll.registry(), Instant::now());
            }
        }
        assert_eq!(steps, [Step::Identify, Step::Started]);
        let end = conn.finish(poll.registry(), Instant::now());
        assert_eq!(end.reason, Some(EndReason::BackendClosed));
        assert_eq!((end.bytes_in, end.bytes_out), (5, 5));
        assert_eq!(end.user.as_deref(), Some("admin"));
        assert_eq!(&confd.join().unwrap(), b"hello");
        assert_eq!(netconf_client.join().unwrap(), b"HELLO");
    }
}
