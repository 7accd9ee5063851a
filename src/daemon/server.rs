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
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::Level;
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::Config;
use crate::daemon::admission::{Admission, Verdict};
use crate::daemon::backend::{self, Attempt, BackendStream, Dialer};
use crate::identity::addr::{self, Show};
use crate::identity::header;
// The server's messages go to an embedder's sink when one is set (see hooks).
use crate::config::inventory::{self, Severity};
use crate::config::tls::Loaded;
use crate::daemon::hooks::{debug, info, log, warn, Hooks, IdentityRequest, SessionEnd};
use crate::daemon::logfmt::Pairs;
use crate::daemon::logging::{self, Logging};
use crate::daemon::reload;
use crate::daemon::sys::{self, Signals};
use crate::identity::rules::Peer;
use crate::relay::session::{EndReason, Session, Side, Status, Stream};

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

/// How often certificate and CRL expiry is checked while running.
const EXPIRY_CHECK: Duration = Duration::from_secs(24 * 3600);

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
    /// Which backend address to try next; set once the client is admitted.
    dialer: Option<Dialer>,
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
            .add("client", Show(self.client_addr))
            .add_some("subject", self.peer.as_ref().map(|p| &p.subject))
            .add_some("sha256", self.peer.as_ref().map(|p| &p.sha256))
            .add_some("user", self.user.as_ref())
            .add_some("tls", (tls != "-").then_some(tls))
            .add_some("backend", self.backend_peer.as_ref());
        pairs
    }
}

/// What a reload computes: the new configuration (names resolved) and its
/// loaded files, or why not.
pub type ReloadResult = Result<(Config, Loaded), String>;

/// Re-reads the configuration, loads its files and resolves the backend's
/// name, for SIGHUP. It runs on a thread of its own: DNS and slow disks
/// must not stall the sessions being served.
pub type Reloader = Arc<dyn Fn() -> ReloadResult + Send + Sync>;

/// Where SIGHUP's work stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReloadState {
    Idle,
    Running,
    /// Running, and another SIGHUP came meanwhile: one more reload follows
    /// (however many came), so the files read last are the newest.
    RunningAgain,
}

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
    /// Where the reload thread hands its result back (then wakes the loop).
    reloads: (Sender<ReloadResult>, Receiver<ReloadResult>),
    reload: ReloadState,
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
    /// The next daily look at certificate and CRL expiry.
    expiry_check_at: Option<Instant>,
    /// How often that look is taken ([`EXPIRY_CHECK`]).
    expiry_check_every: Duration,
    /// Connections closed before sending a byte (health checks).
    silent_closes: u64,
    /// The daemon's logger (SIGUSR1, reloads); the C library has none.
    logging: Option<Logging>,
}

impl Server {
    /// Binds every listen address; errors name the address.
    pub fn bind(config: Config, tls: Loaded) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listeners = Vec::new();
        for (i, &addr) in config.listen.iter().enumerate() {
            let mut l = sys::tcp_listener(addr, v6_only(addr, &config.listen), LISTEN_BACKLOG)
                .map(TcpListener::from_std)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot listen on {}: {e}", Show(addr)))
                })?;
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
            reloads: mpsc::channel(),
            reload: ReloadState::Idle,
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
            expiry_check_at: None,
            expiry_check_every: EXPIRY_CHECK,
            silent_closes: 0,
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
            "listening on {:?}, backend {} ({})",
            self.local_addrs(),
            self.config.backend,
            self.config.backend.addresses().join(" ")
        );
        self.check_files(true, Instant::now());
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
                    WAKER => {
                        if self.stop_flag.load(Ordering::SeqCst) {
                            self.begin_stop(now);
                        }
                        self.reload_done();
                    }
                    SIGNALS => self.read_signals(now),
                    Token(t) if t > FIRST_LISTENER - self.listeners.len() => {
                        self.accept(FIRST_LISTENER - t, now)
                    }
                    Token(t) => self.conn_event(t / 2, t % 2 == 1, event, now),
                }
            }
            self.expire_timers(now);
            if self.expiry_check_at.is_some_and(|t| t <= now) {
                self.check_files(false, now);
            }
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
        for t in [
            self.accept_retry_at,
            self.stop_deadline,
            self.expiry_check_at,
        ]
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
            self.start_reload();
        }
    }

    /// Starts computing a reload on a thread; while one runs, another
    /// SIGHUP only asks for one more afterwards.
    fn start_reload(&mut self) {
        let Some(reloader) = self.reloader.clone() else {
            return;
        };
        if self.reload != ReloadState::Idle {
            self.reload = ReloadState::RunningAgain;
            debug!("reload: one is running; another follows it");
            return;
        }
        let (results, waker) = (self.reloads.0.clone(), self.waker.clone());
        let started = std::thread::Builder::new()
            .name("nctls-reload".into())
            .spawn(move || {
                // The loop may have stopped meanwhile: nothing to hand back then.
                let _ = results.send(reloader());
                let _ = waker.wake();
            });
        match started {
            Ok(_) => self.reload = ReloadState::Running,
            Err(e) => warn!(
                "reload failed, keeping the current configuration: cannot start its thread: {e}"
            ),
        }
    }

    /// Applies a finished reload, if one is waiting, and starts the one
    /// asked for meanwhile.
    fn reload_done(&mut self) {
        while let Ok(result) = self.reloads.1.try_recv() {
            let again = self.reload == ReloadState::RunningAgain;
            self.reload = ReloadState::Idle;
            self.apply_reload(result);
            if again {
                self.start_reload();
            }
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

    /// Replaces configuration, certificates and identity rules for new
    /// sessions (live sessions keep what they started with) and the log
    /// level and destination; logs each option that changed and those that
    /// wait for a restart. A broken new configuration changes nothing.
    fn apply_reload(&mut self, result: ReloadResult) {
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
        self.check_files(true, Instant::now());
        if let Some(logging) = &self.logging {
            // Last, so that this reload's lines are where the old settings put them.
            if let Err(e) = logging.apply(self.config.log_level, &self.config.log_output) {
                warn!("reload: {e}; log lines still go where they went");
            }
        }
    }

    /// Logs what is wrong with the loaded certificates and CRLs or expires
    /// soon (an expired server certificate or CRL at error level: clients
    /// will fail, but the server keeps running), and schedules the next
    /// daily look. `loading`: also the warnings found while loading.
    fn check_files(&mut self, loading: bool, now: Instant) {
        let inventory = self.tls.inventory.clone();
        if loading {
            for warning in inventory.load_warnings() {
                warn!("{warning}");
            }
        }
        let days = self.config.expiry_warning_days;
        for finding in inventory.expiry(inventory::unix_now(), days) {
            let level = match finding.severity {
                Severity::Error => Level::Error,
                Severity::Warning => Level::Warn,
            };
            log!(level, "{}", finding.text);
        }
        self.expiry_check_at = Some(now + self.expiry_check_every);
    }

    /// Identity and session-end hooks for an embedder (the C library).
    pub fn set_hooks(&mut self, hooks: Hooks) {
        self.hooks = hooks;
    }

    /// The daemon's logger, for SIGUSR1 and for applying reloads.
    pub fn set_logging(&mut self, logging: Logging) {
        self.logging = Some(logging);
    }

    /// What SIGHUP runs, on a thread, to re-read the configuration and its
    /// files; the loop applies the result.
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
        info!(
            "connections closed before sending a byte (health checks): {}",
            self.silent_closes
        );
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
                // One form per client from here on (IPv4, not ::ffff:a.b.c.d).
                Ok((stream, addr)) => self.start_session(stream, addr::canonical(addr), now),
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
                warn!("session from {}: cannot start TLS: {e}", Show(addr));
                return;
            }
        };
        let _ = client.set_nodelay(true);
        keepalive(&client, self.config.tcp_keepalive);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            &mut client,
            Token(2 * slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("session from {}: cannot register: {e}", Show(addr));
            self.free.push(slot);
            return;
        }
        debug!("session from {}: accepted", Show(addr));
        let verdict = self.admission.decide(addr.ip());
        self.sessions_started += 1;
        self.slots[slot] = Some(Conn {
            id: self.sessions_started,
            session,
            client,
            client_addr: addr,
            backend: Backend::None,
            dialer: None,
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
                if backend::is_address_failure(&result) {
                    if let (Some(dialer), Err(e)) = (conn.dialer.as_mut(), &result) {
                        dialer.failed(e);
                    }
                    self.dial(slot, now);
                    self.drive(slot, now);
                    return;
                }
                if result.is_ok() {
                    if let Backend::Connecting(socket) =
                        std::mem::replace(&mut conn.backend, Backend::None)
                    {
                        socket.set_nodelay();
                        conn.backend_peer = conn.dialer.as_ref().and_then(Dialer::current);
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
        conn.dialer = Some(Dialer::new(&self.config.backend));
        self.dial(slot, now);
    }

    /// Starts connecting to the next backend address (dropping the attempt
    /// before it), or ends the session when none is left.
    fn dial(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.slots[slot].as_mut() else {
            return;
        };
        let Some(dialer) = conn.dialer.as_mut() else {
            return;
        };
        let registry = self.poll.registry();
        if let Backend::Connecting(mut old) = std::mem::replace(&mut conn.backend, Backend::None) {
            let _ = registry.deregister(&mut old);
        }
        let attempt = dialer.next(|socket| {
            registry.register(
                socket,
                Token(2 * slot + 1),
                Interest::READABLE | Interest::WRITABLE,
            )
        });
        match attempt {
            Attempt::Started(socket) => {
                conn.backend = Backend::Connecting(socket);
                conn.session.backend_attempt(now);
            }
            Attempt::Exhausted(reason) => conn.session.backend_gave_up(reason, now),
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
            if conn.session.connect_expired(now) && conn.dialer.is_some() {
                if let Some(dialer) = conn.dialer.as_mut() {
                    dialer.timed_out();
                }
                self.dial(slot, now);
            } else {
                conn.session.on_deadline(now);
            }
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
            backend.release(registry, conn.session.backend_needs_reset());
        }
        let (up, down) = conn.session.bytes();
        if conn.peer.is_none() {
            // A refused handshake: the certificate the client presented.
            conn.peer = conn.session.client_certificate().map(|c| Peer::of(c));
        }
        let silent = conn.session.closed_silently();
        self.silent_closes += u64::from(silent);
        let level = match &reason {
            _ if silent => Level::Debug,
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
                backend: conn.backend_peer.as_deref(),
                bytes_in: up,
                bytes_out: down,
                duration,
                reason: reason.as_ref(),
            });
        }
    }
}

/// TCP keepalive on a client socket, so a client that vanished without FIN
/// or RST (power loss, a NAT dropping state) does not keep its backend
/// session, and its locks, forever.
pub(crate) fn keepalive(client: &impl AsRawFd, idle: Option<Duration>) {
    if let Some(idle) = idle {
        if let Err(e) = sys::set_keepalive(client.as_raw_fd(), idle) {
            debug!("cannot set TCP keepalive: {e}");
        }
    }
}

/// IPV6_V6ONLY for a listener: an IPv6 wildcard leaves IPv4 to a v4
/// listener on the same port (both can bind), and accepts IPv4 itself
/// otherwise, whatever the system default; other addresses keep the default.
fn v6_only(addr: SocketAddr, all: &[SocketAddr]) -> Option<bool> {
    match addr {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            Some(addr.port() != 0 && all.iter().any(|a| a.is_ipv4() && a.port() == addr.port()))
        }
        _ => None,
    }
}

fn is_resource_limit(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
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
}
