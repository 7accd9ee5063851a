//! The event loop: one thread, one `mio::Poll`, every session in a slot
//! table, deadlines in a heap. Accepts clients, connects to the backend once
//! a client is identified, hands readiness to each [`Session`], and closes
//! sockets when a session ends.
//!
//! Tokens: slot `i` uses `2i` for its client socket and `2i + 1` for its
//! backend socket; the listeners, the signal fd and the waker use the top of
//! the token space. Slots freed during a batch of events are reused only
//! after the batch, so a stale event never reaches a new session.
//!
//! The timer set holds exactly one entry per session that has a deadline,
//! replaced when the deadline moves and removed when it goes: an idle
//! session without an idle timeout never wakes the loop.

use std::collections::BTreeSet;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::Level;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::admission::{Admission, Verdict};
use crate::backend::BackendStream;
use crate::config::Config;
use crate::header;
// The server's messages go to an embedder's sink when one is set (see hooks).
use crate::hooks::{debug, info, log, warn, Hooks, IdentityRequest, SessionEnd};
use crate::identity::Peer;
use crate::logfmt::Pairs;
use crate::logging::{self, Logging};
use crate::reload;
use crate::session::{EndReason, Session, Side, Status, Stream};
use crate::sys::{self, Signals};
use crate::tls::Loaded;

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const FIRST_LISTENER: usize = usize::MAX - 2;

/// What one read from a backend may bring: up to sixteen 4 KiB records,
/// encrypted and sent to the client with one write.
const SCRATCH: usize = 64 * 1024;

/// Connections the kernel queues for us (mio binds with 128, which a burst
/// of clients outruns; Linux caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// How long accepting pauses after running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl Stream for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

enum Backend {
    None,
    Connecting(BackendStream),
    Connected(BackendStream),
}

impl Backend {
    fn socket(&mut self) -> Option<&mut BackendStream> {
        match self {
            Backend::None => None,
            Backend::Connecting(s) | Backend::Connected(s) => Some(s),
        }
    }
}

struct Conn {
    /// Counted from 1 per process: joins a session's start and end lines.
    id: u64,
    session: Session,
    client: TcpStream,
    client_addr: SocketAddr,
    backend: Backend,
    /// The address the backend connection reached, once it is up.
    backend_peer: Option<String>,
    peer: Option<Peer>,
    user: Option<String>,
    verdict: Verdict,
    /// This slot's entry in the timer set.
    scheduled: Option<Instant>,
}

impl Conn {
    /// Who the session is: the fields its log lines start with (the
    /// unknown ones left out).
    fn pairs(&self) -> Pairs {
        let mut pairs = Pairs::new();
        let tls = self.session.tls_description();
        pairs
            .add("session", self.id)
            .add("client", self.client_addr)
            .add_some("subject", self.peer.as_ref().map(|p| &p.subject))
            .add_some("sha256", self.peer.as_ref().map(|p| &p.sha256))
            .add_some("user", self.user.as_ref())
            .add_some("tls", (tls != "-").then_some(tls))
            .add_some("backend", self.backend_peer.as_ref());
        pairs
    }
}

/// The address a backend connection reached: the connected socket's peer,
/// which is what a session used even when the configuration names several.
fn backend_peer(socket: &BackendStream) -> String {
    let peer = match socket {
        BackendStream::Tcp(s) => s.peer_addr().map(|a| a.to_string()),
        BackendStream::Unix(s) => s.peer_addr().map(|a| match a.as_pathname() {
            Some(path) => format!("unix:{}", path.display()),
            None => "unix".to_string(),
        }),
    };
    peer.unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Re-reads the configuration and loads its files, for SIGHUP.
pub type Reloader = Box<dyn FnMut() -> Result<(Config, Loaded), String>>;

/// Asks a running server to stop, from any thread.
#[derive(Clone)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    /// Stop accepting and end every session with close_notify.
    pub fn stop(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::SeqCst);
        self.waker.wake()
    }
}

pub struct Server {
    poll: Poll,
    config: Config,
    tls: Loaded,
    listeners: Vec<TcpListener>,
    signals: Option<Signals>,
    reloader: Option<Reloader>,
    stop_flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
    slots: Vec<Option<Conn>>,
    /// Sessions accepted so far (the last session number given).
    sessions_started: u64,
    free: Vec<usize>,
    released: Vec<usize>,
    live: usize,
    admission: Admission,
    timers: BTreeSet<(Instant, usize)>,
    scratch: Vec<u8>,
    accept_paused: bool,
    accept_retry_at: Option<Instant>,
    /// Accepting hit a limit (descriptors or --max-sessions) and said so; the
    /// next warning waits until the backlog has been emptied again.
    accept_limited: bool,
    stop_deadline: Option<Instant>,
    hooks: Hooks,
    /// The daemon's logger (SIGUSR1, reloads); the C library has none.
    logging: Option<Logging>,
}

impl Server {
    /// Binds every listen address; errors name the address.
    pub fn bind(config: Config, tls: Loaded) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        for (i, addr) in config.listen.iter().enumerate() {
            let mut l = TcpListener::bind(*addr)
                .and_then(|l| sys::set_backlog(l.as_raw_fd(), LISTEN_BACKLOG).map(|()| l))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            poll.registry()
                .register(&mut l, Token(FIRST_LISTENER - i), Interest::READABLE)?;
            listeners.push(l);
        }
        let admission = Admission::new(config.max_sessions, config.max_sessions_per_ip);
        Ok(Server {
            poll,
            config,
            tls,
            listeners,
            signals: None,
            reloader: None,
            stop_flag: Arc::new(AtomicBool::new(false)),
            waker,
            slots: Vec::new(),
            sessions_started: 0,
            free: Vec::new(),
            released: Vec::new(),
            live: 0,
            admission,
            timers: BTreeSet::new(),
            scratch: vec![0; SCRATCH],
            accept_paused: false,
            accept_retry_at: None,
            accept_limited: false,
            stop_deadline: None,
            hooks: Hooks::default(),
            logging: None,
        })
    }

    /// The bound addresses (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Acts on the signals delivered through `signals`: SIGTERM/SIGINT stop,
    /// SIGHUP reloads, SIGUSR1 reopens the log file, SIGUSR2 lists the live
    /// sessions. Only the first two end sessions.
    pub fn handle_signals(&mut self, mut signals: Signals) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            flag: self.stop_flag.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until stopped and every session has ended.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        info!(
            "listening on {:?}, backend {}",
            self.local_addrs(),
            self.config.backend
        );
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.stop_deadline {
                if self.live == 0 {
                    info!("stopped");
                    return Ok(());
                }
                if now >= deadline {
                    warn!("stopped with {} session(s) not closed in time", self.live);
                    return Ok(());
                }
            }
            match self.poll.poll(&mut events, self.timeout(now)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER if self.stop_flag.load(Ordering::SeqCst) => self.begin_stop(now),
                    WAKER => {}
                    SIGNALS => self.read_signals(now),
                    Token(t) if t > FIRST_LISTENER - self.listeners.len() => {
                        self.accept(FIRST_LISTENER - t, now)
                    }
                    Token(t) => self.conn_event(t / 2, t % 2 == 1, event, now),
                }
            }
            self.expire_timers(now);
            self.free.append(&mut self.released);
            if self.accept_paused && self.accept_retry_at.is_none_or(|t| t <= now) {
                self.accept_paused = false;
                self.accept_retry_at = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        let mut next = self.timers.first().map(|&(t, _)| t);
        for t in [self.accept_retry_at, self.stop_deadline]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    fn read_signals(&mut self, now: Instant) {
        let (mut stop, mut reload, mut reopen, mut list) = (false, false, false, false);
        if let Some(signals) = &self.signals {
            while let Ok(Some(sig)) = signals.next() {
                stop |= sig == libc::SIGTERM || sig == libc::SIGINT;
                reload |= sig == libc::SIGHUP;
                reopen |= sig == libc::SIGUSR1;
                list |= sig == libc::SIGUSR2;
            }
        }
        if reopen {
            self.reopen_log();
        }
        if list {
            self.list_sessions(now);
        }
        if stop {
            info!("signal: stopping");
            self.begin_stop(now);
        } else if reload {
            self.reload();
        }
    }

    /// SIGUSR1, for logrotate: lines go to a fresh file by the same name.
    fn reopen_log(&mut self) {
        match self.logging.as_ref().map(Logging::reopen) {
            Some(Ok(Some(file))) => info!("SIGUSR1: reopened the log file {file}"),
            Some(Err(e)) => warn!("SIGUSR1: {e}; still writing to the file as it was"),
            Some(Ok(None)) | None => {
                info!("SIGUSR1: no log file to reopen (not logging to a file)")
            }
        }
    }

    /// SIGUSR2: one line per live session, after a line with their count.
    fn list_sessions(&self, now: Instant) {
        info!("live sessions: count={}", self.live);
        for conn in self.slots.iter().flatten() {
            let (up, down) = conn.session.bytes();
            let age = now.duration_since(conn.session.started());
            let mut pairs = conn.pairs();
            pairs
                .add("state", conn.session.state())
                .add("age", format_args!("{:.3}s", age.as_secs_f64()))
                .add("bytes-in", up)
                .add("bytes-out", down);
            info!("live session: {pairs}");
        }
    }

    /// SIGHUP: re-reads the configuration and its files, then applies them.
    fn reload(&mut self) {
        let Some(reloader) = self.reloader.as_mut() else {
            return;
        };
        let result = reloader();
        self.apply_reload(result);
    }

    /// Replaces configuration, certificates and identity rules for new
    /// sessions (live sessions keep what they started with) and the log
    /// level and destination; logs each option that changed and those that
    /// wait for a restart. A broken new configuration changes nothing.
    fn apply_reload(&mut self, result: Result<(Config, Loaded), String>) {
        let (config, tls) = match result {
            Ok(loaded) => loaded,
            Err(e) => {
                warn!("reload failed, keeping the current configuration: {e}");
                return;
            }
        };
        for change in reload::changes(&self.config, &config) {
            if change.needs_restart() {
                warn!("reload: {change} needs a restart; unchanged until then");
            } else if change.option == "log-level" && logging::rust_log_overrides() {
                info!("reload: changed: {change} (RUST_LOG is set and decides)");
            } else {
                info!("reload: changed: {change}");
            }
        }
        self.config = Config {
            listen: std::mem::take(&mut self.config.listen),
            ..config
        };
        self.tls = tls;
        self.admission
            .set_limits(self.config.max_sessions, self.config.max_sessions_per_ip);
        info!("reload: done; new sessions use the new configuration");
        if let Some(logging) = &self.logging {
            // Last, so that this reload's lines are where the old settings put them.
            if let Err(e) = logging.apply(self.config.log_level, &self.config.log_output) {
                warn!("reload: {e}; log lines still go where they went");
            }
        }
    }

    /// Identity and session-end hooks for an embedder (the C library).
    pub fn set_hooks(&mut self, hooks: Hooks) {
        self.hooks = hooks;
    }

    /// The daemon's logger, for SIGUSR1 and for applying reloads.
    pub fn set_logging(&mut self, logging: Logging) {
        self.logging = Some(logging);
    }

    /// What SIGHUP calls to re-read the configuration and its files.
    pub fn set_reloader(&mut self, reloader: Reloader) {
        self.reloader = Some(reloader);
    }

    /// Stop accepting; end every session with close_notify.
    fn begin_stop(&mut self, now: Instant) {
        if self.stop_deadline.is_some() {
            return;
        }
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        // Only now: once this line is out, new connections are refused.
        info!("stopping: ending {} session(s)", self.live);
        self.accept_paused = false;
        self.accept_retry_at = None;
        self.stop_deadline = Some(now + self.config.limits.drain_timeout + Duration::from_secs(1));
        for slot in 0..self.slots.len() {
            if let Some(conn) = self.slots[slot].as_mut() {
                conn.session.shutdown(now);
                self.drive(slot, now);
            }
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        while self.admission.can_accept() {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
                Ok((stream, addr)) => self.start_session(stream, addr, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.accept_limited {
                        self.accept_limited = false;
                        info!("accepting new connections again");
                    }
                    return;
                }
                Err(e) if is_resource_limit(&e) => {
                    // Sessions already open keep being served; this logs
                    // once, not on every retry.
                    if !self.accept_limited {
                        self.accept_limited = true;
                        warn!(
                            "cannot accept: {e}; new connections wait in the listen backlog \
                             (retrying every {} ms)",
                            ACCEPT_RETRY.as_millis()
                        );
                    }
                    self.accept_paused = true;
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
                Err(e) => debug!("accept: {e}"),
            }
        }
        if !self.accept_limited {
            self.accept_limited = true;
            warn!(
                "max-sessions ({}) reached and its refusals in flight: new connections wait in the listen backlog",
                self.config.max_sessions
            );
        }
        self.accept_paused = true;
    }

    fn start_session(&mut self, mut client: TcpStream, addr: SocketAddr, now: Instant) {
        let session = match Session::new(self.tls.server.clone(), self.config.limits.clone(), now) {
            Ok(session) => session,
            Err(e) => {
                warn!("session from {addr}: cannot start TLS: {e}");
                return;
            }
        };
        let _ = client.set_nodelay(true);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut client,
            Token(2 * slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("session from {addr}: cannot register: {e}");
            self.free.push(slot);
            return;
        }
        debug!("session from {addr}: accepted");
        let verdict = self.admission.decide(addr.ip());
        self.sessions_started += 1;
        self.slots[slot] = Some(Conn {
            id: self.sessions_started,
            session,
            client,
            client_addr: addr,
            backend: Backend::None,
            backend_peer: None,
            peer: None,
            user: None,
            verdict,
            scheduled: None,
        });
        self.live += 1;
        self.drive(slot, now);
    }

    fn conn_event(&mut self, slot: usize, is_backend: bool, event: &Event, now: Instant) {
        let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_write_closed() || event.is_error();
        if is_backend {
            if let Backend::Connecting(socket) = &conn.backend {
                let Some(result) = socket.connect_result() else {
                    return;
                };
                if result.is_ok() {
                    if let Backend::Connecting(socket) =
                        std::mem::replace(&mut conn.backend, Backend::None)
                    {
                        socket.set_nodelay();
                        conn.backend_peer = Some(backend_peer(&socket));
                        conn.backend = Backend::Connected(socket);
                    }
                    // Admitted and connected: the session has begun.
                    info!("session start: {}", conn.pairs());
                }
                conn.session.backend_connect_done(result, now);
            }
            conn.session.set_ready(Side::Backend, readable, writable);
        } else {
            if event.is_error() {
                conn.session.client_socket_error(conn.client.take_error());
            }
            conn.session.set_ready(Side::Client, readable, writable);
        }
        self.drive(slot, now);
    }

    /// Runs the session until it waits, then re-arms its deadline.
    fn drive(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(conn) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            let backend = match &mut conn.backend {
                Backend::Connected(s) => Some(s),
                _ => None,
            };
            match conn
                .session
                .pump(&mut conn.client, backend, &mut self.scratch, now)
            {
                Status::Continue => break,
                Status::HandshakeDone => self.identify(slot, now),
                Status::Ended => {
                    self.finish(slot, now);
                    return;
                }
            }
        }
        self.schedule(slot);
    }

    /// Decides the user, then connects to the backend or refuses.
    fn identify(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.slots[slot].as_mut() else {
            return;
        };
        let chain = conn.session.peer_certificates().unwrap_or(&[]);
        conn.peer = chain.first().map(|c| Peer::of(c));
        if let Verdict::Refuse(why) = conn.verdict {
            conn.session.refuse(why.to_string(), now);
            return;
        }
        let rules = self.tls.mapper.user_for(chain);
        let decision = match self.hooks.identity.as_mut() {
            Some(hook) => hook(&IdentityRequest {
                chain,
                client: conn.client_addr,
                rules: rules.as_deref().map_err(String::as_str),
            }),
            None => rules,
        };
        let decision = decision.and_then(|user| {
            header::build(
                self.config.header,
                &user,
                conn.client_addr,
                self.config.accounts.fields_for(&user),
            )
            .map(|h| (user, h))
            .map_err(|why| format!("header field unusable: {why}"))
        });
        match decision {
            Ok((user, header)) => {
                conn.user = Some(user);
                conn.session.admit(&header, now);
                self.connect_backend(slot, now);
            }
            Err(why) => conn.session.refuse(why, now),
        }
    }

    fn connect_backend(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.slots[slot].as_mut() else {
            return;
        };
        let result = self.config.backend.connect().and_then(|mut socket| {
            self.poll.registry().register(
                &mut socket,
                Token(2 * slot + 1),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(socket)
        });
        match result {
            Ok(socket) => conn.backend = Backend::Connecting(socket),
            Err(e) => conn.session.backend_failed(e.to_string(), now),
        }
    }

    /// Makes the timer set hold this slot's current deadline, and only that.
    fn schedule(&mut self, slot: usize) {
        let Some(conn) = self.slots[slot].as_mut() else {
            return;
        };
        let deadline = conn.session.deadline();
        if deadline != conn.scheduled {
            if let Some(old) = conn.scheduled {
                self.timers.remove(&(old, slot));
            }
            if let Some(d) = deadline {
                self.timers.insert((d, slot));
            }
            conn.scheduled = deadline;
        }
    }

    fn expire_timers(&mut self, now: Instant) {
        // A session's next deadline is later than now, so one pass over the
        // entries present at the start is enough.
        for _ in 0..self.timers.len() {
            let Some(&(t, slot)) = self.timers.first() else {
                break;
            };
            if t > now {
                break;
            }
            self.timers.pop_first();
            let Some(conn) = self.slots[slot].as_mut() else {
                continue;
            };
            conn.scheduled = None;
            conn.session.on_deadline(now);
            self.drive(slot, now);
        }
    }

    /// Closes both sockets, logs the session's one summary line.
    fn finish(&mut self, slot: usize, now: Instant) {
        let Some(mut conn) = self.slots[slot].take() else {
            return;
        };
        if let Some(t) = conn.scheduled {
            self.timers.remove(&(t, slot));
        }
        self.live -= 1;
        self.admission.release(conn.client_addr.ip(), conn.verdict);
        self.released.push(slot);
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut conn.client);
        let reason = conn.session.end_reason().cloned();
        if let Some(backend) = conn.backend.socket() {
            backend.release(
                registry,
                reason.as_ref().is_some_and(EndReason::is_truncation),
            );
        }
        let (up, down) = conn.session.bytes();
        let level = match &reason {
            Some(r) if !r.is_error() => Level::Info,
            _ => Level::Warn,
        };
        let peer = conn.peer.as_ref();
        let duration = now.duration_since(conn.session.started());
        // Subjects and user names are chosen by whoever holds a certificate:
        // logfmt quoting keeps them inside their own field.
        let mut pairs = conn.pairs();
        pairs
            .add("bytes-in", up)
            .add("bytes-out", down)
            .add("duration", format_args!("{:.3}s", duration.as_secs_f64()))
            .add(
                "reason",
                reason.as_ref().map_or("unknown", EndReason::token),
            )
            .add_some("detail", reason.as_ref().and_then(EndReason::detail));
        log!(level, "session end: {pairs}");
        if let Some(hook) = self.hooks.session_end.as_mut() {
            hook(&SessionEnd {
                client: conn.client_addr,
                peer,
                user: conn.user.as_deref(),
                tls: &conn.session.tls_description(),
                bytes_in: up,
                bytes_out: down,
                duration,
                reason: reason.as_ref(),
            });
        }
    }
}

fn is_resource_limit(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
