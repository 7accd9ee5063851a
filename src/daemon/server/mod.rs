//! The event loop: one thread, one `mio::Poll`, every session a
//! [`Connection`] in the slot table ([`Slots`]: tokens, deadlines). Accepts
//! clients, decides who each is (admission, cert-to-name rules, the
//! embedder's identity hook, the header), logs each session's start and
//! end, and handles signals, reloads and the daily expiry check. The
//! connections do the rest.
//!
//! The listeners, the signal fd and the waker use the top of the token
//! space; the slots use the rest from the bottom (see [`slots`]).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::Level;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::Config;
use crate::daemon::admission::{Admission, Verdict};
use crate::daemon::backend::Dialer;
use crate::daemon::conn::{header_for, BackendSource, Connection, Step};
use crate::identity::addr::Show;
// The server's messages go to an embedder's sink when one is set (see hooks).
use crate::config::inventory::{self, Severity};
use crate::config::tls::Loaded;
use crate::daemon::hooks::{debug, info, log, warn, Hooks, IdentityRequest};
use crate::daemon::listen::Listeners;
use crate::daemon::logfmt::Pairs;
use crate::daemon::logging::{self, Logging};
use crate::daemon::reload::{self, ReloadResult, Reloader, Reloads};
use crate::daemon::slots::{self, Slots};
use crate::daemon::sys::Signals;
use crate::identity::rules::Peer;
use crate::relay::session::{EndReason, Session};

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const FIRST_LISTENER: usize = usize::MAX - 2;

/// What one read from a backend may bring: up to sixteen 4 KiB records,
/// encrypted and sent to the client with one write.
const SCRATCH: usize = 64 * 1024;

/// How often certificate and CRL expiry is checked while running.
const EXPIRY_CHECK: Duration = Duration::from_secs(24 * 3600);

/// A session the daemon serves: its connection, its number and what
/// admission decided for it.
struct Live {
    /// Counted from 1 per process: joins a session's start and end lines.
    id: u64,
    verdict: Verdict,
    conn: Connection,
}

impl Live {
    fn pairs(&self) -> Pairs {
        let c = &self.conn;
        let tls = c.session().tls_description();
        who(
            self.id,
            c.client_addr(),
            c.peer(),
            c.user(),
            &tls,
            c.backend_peer(),
        )
    }
}

/// Who a session is: the fields its log lines start with (the unknown ones
/// left out).
fn who(
    id: u64,
    client: SocketAddr,
    peer: Option<&Peer>,
    user: Option<&str>,
    tls: &str,
    backend: Option<&str>,
) -> Pairs {
    let mut pairs = Pairs::new();
    pairs
        .add("session", id)
        .add("client", Show(client))
        .add_some("subject", peer.map(|p| &p.subject))
        .add_some("sha256", peer.map(|p| &p.sha256))
        .add_some("user", user)
        .add_some("tls", (tls != "-").then_some(tls))
        .add_some("backend", backend);
    pairs
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

/// The daemon: the listeners and every session, on the thread that calls
/// [`Server::run`], with one `mio::Poll`. Made by [`Server::bind`], then
/// given what it may use ([`Server::handle_signals`],
/// [`Server::set_hooks`], [`Server::set_logging`],
/// [`Server::set_reloader`]); `nctls` and the C library's `nctls_server`
/// are each one `Server`.
///
/// It stops when a [`Stopper`] asks (`nctls_server_stop`) or, with
/// [`Server::handle_signals`], on SIGTERM or SIGINT: the listeners close,
/// every session ends with close_notify ([`EndReason::Shutdown`]), and
/// `run` returns once all have ended, or `--drain-timeout` plus one second
/// after the stop began.
pub struct Server {
    poll: Poll,
    config: Config,
    tls: Loaded,
    listeners: Listeners,
    signals: Option<Signals>,
    reloads: Reloads,
    stop_flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
    slots: Slots<Live>,
    /// Sessions accepted so far (the last session number given).
    sessions_started: u64,
    admission: Admission,
    /// Where each read from a backend lands, shared by every session.
    scratch: Vec<u8>,
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
        let listeners = Listeners::bind(&config.listen, poll.registry(), |i| {
            Token(FIRST_LISTENER - i)
        })?;
        let admission = Admission::new(config.max_sessions, config.max_sessions_per_ip);
        Ok(Server {
            poll,
            config,
            tls,
            listeners,
            signals: None,
            reloads: Reloads::default(),
            stop_flag: Arc::new(AtomicBool::new(false)),
            waker,
            slots: Slots::default(),
            sessions_started: 0,
            admission,
            scratch: vec![0; SCRATCH],
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
        self.listeners.local_addrs()
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

    /// A handle that stops this server from any thread, once or often.
    pub fn stopper(&self) -> Stopper {
        Stopper {
            flag: self.stop_flag.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until stopped and every session has ended (see [`Server`]).
    /// Errors: only the poll itself failing (epoll_wait), which ends the
    /// loop with sessions still open.
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
                if self.slots.is_empty() {
                    info!("stopped");
                    return Ok(());
                }
                if now >= deadline {
                    warn!(
                        "stopped with {} session(s) not closed in time",
                        self.slots.len()
                    );
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
                    token => {
                        let (slot, side) = slots::owner(token);
                        if let Some(live) = self.slots.get_mut(slot) {
                            live.conn.on_event(side, event, self.poll.registry(), now);
                            self.drive(slot, now);
                        }
                    }
                }
            }
            self.expire_timers(now);
            if self.expiry_check_at.is_some_and(|t| t <= now) {
                self.check_files(false, now);
            }
            self.slots.end_batch();
            if self.listeners.resume_due(now) {
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
        }
    }

    fn timeout(&self, now: Instant) -> Option<Duration> {
        let mut next = self.slots.next_deadline();
        for t in [
            self.listeners.retry_at(),
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
            self.reloads.start(&self.waker);
        }
    }

    /// Applies a finished reload, if one is waiting, and starts the one
    /// asked for meanwhile.
    fn reload_done(&mut self) {
        while let Some((result, again)) = self.reloads.finished() {
            self.apply_reload(result);
            if again {
                self.reloads.start(&self.waker);
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
        info!("live sessions: count={}", self.slots.len());
        for live in self.slots.values() {
            let session = live.conn.session();
            let (up, down) = session.bytes();
            let age = now.duration_since(session.started());
            let mut pairs = live.pairs();
            pairs
                .add("state", session.state())
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
        self.reloads.set_reloader(reloader);
    }

    /// Stop accepting; end every session with close_notify.
    fn begin_stop(&mut self, now: Instant) {
        if self.stop_deadline.is_some() {
            return;
        }
        self.listeners.close(self.poll.registry());
        // Only now: once this line is out, new connections are refused.
        info!("stopping: ending {} session(s)", self.slots.len());
        info!(
            "connections closed before sending a byte (health checks): {}",
            self.silent_closes
        );
        self.stop_deadline = Some(now + self.config.limits.drain_timeout + Duration::from_secs(1));
        for slot in self.slots.occupied() {
            if let Some(live) = self.slots.get_mut(slot) {
                live.conn.shutdown(now);
                self.drive(slot, now);
            }
        }
    }

    /// Starts sessions for the clients waiting at listener `index`, as
    /// many as admission takes.
    fn accept(&mut self, index: usize, now: Instant) {
        while self.admission.can_accept() {
            let Some((client, addr)) = self.listeners.accept(index, now) else {
                return;
            };
            self.start_session(client, addr, now);
        }
        self.listeners.full(self.config.max_sessions);
    }

    fn start_session(&mut self, client: TcpStream, addr: SocketAddr, now: Instant) {
        let session = match Session::new(self.tls.server.clone(), self.config.limits.clone(), now) {
            Ok(session) => session,
            Err(e) => {
                warn!("session from {}: cannot start TLS: {e}", Show(addr));
                return;
            }
        };
        let tokens = slots::tokens(self.slots.next_slot());
        let keepalive = self.config.tcp_keepalive;
        let conn = match Connection::new(
            session,
            client,
            addr,
            tokens,
            keepalive,
            self.poll.registry(),
        ) {
            Ok(conn) => conn,
            Err((e, _)) => {
                warn!("session from {}: cannot register: {e}", Show(addr));
                return;
            }
        };
        debug!("session from {}: accepted", Show(addr));
        let verdict = self.admission.decide(addr.ip());
        self.sessions_started += 1;
        let slot = self.slots.insert(Live {
            id: self.sessions_started,
            verdict,
            conn,
        });
        self.drive(slot, now);
    }

    /// Runs the connection until it waits, then re-arms its deadline.
    fn drive(&mut self, slot: usize, now: Instant) {
        loop {
            let Some(live) = self.slots.get_mut(slot) else {
                return;
            };
            match live.conn.run(&mut self.scratch, now) {
                Step::Wait => break,
                Step::Identify => self.identify(slot, now),
                // Admitted and connected: the session has begun.
                Step::Started => info!("session start: {}", live.pairs()),
                Step::Ended => {
                    self.finish(slot, now);
                    return;
                }
            }
        }
        let deadline = self.slots.get(slot).and_then(|live| live.conn.deadline());
        self.slots.schedule(slot, deadline);
    }

    /// Decides the user, then connects to the backend or refuses.
    fn identify(&mut self, slot: usize, now: Instant) {
        let Some(live) = self.slots.get_mut(slot) else {
            return;
        };
        let conn = &mut live.conn;
        let decision = match live.verdict {
            Verdict::Refuse(why) => Err(why.to_string()),
            Verdict::Admit => {
                let (chain, client) = (conn.chain(), conn.client_addr());
                let rules = self.tls.mapper.user_for(chain);
                let user = match self.hooks.identity.as_mut() {
                    Some(hook) => hook(&IdentityRequest {
                        chain,
                        client,
                        rules: rules.as_deref().map_err(String::as_str),
                    }),
                    None => rules,
                };
                header_for(user, self.config.header, &self.config.accounts, client)
            }
        };
        match decision {
            Ok((user, header)) => {
                let backend = BackendSource::Dial(Dialer::new(&self.config.backend));
                conn.admit(user, &header, backend, self.poll.registry(), now);
            }
            Err(why) => conn.refuse(why, now),
        }
    }

    fn expire_timers(&mut self, now: Instant) {
        for slot in self.slots.take_due(now) {
            if let Some(live) = self.slots.get_mut(slot) {
                live.conn.on_deadline(self.poll.registry(), now);
                self.drive(slot, now);
            }
        }
    }

    /// Closes both sockets, logs the session's one summary line.
    fn finish(&mut self, slot: usize, now: Instant) {
        let Some(live) = self.slots.remove(slot) else {
            return;
        };
        self.admission
            .release(live.conn.client_addr().ip(), live.verdict);
        let end = live.conn.finish(self.poll.registry(), now);
        self.silent_closes += u64::from(end.silent);
        let level = match &end.reason {
            _ if end.silent => Level::Debug,
            Some(r) if !r.is_error() => Level::Info,
            _ => Level::Warn,
        };
        // Subjects and user names are chosen by whoever holds a certificate:
        // logfmt quoting keeps them inside their own field.
        let mut pairs = who(
            live.id,
            end.client,
            end.peer.as_ref(),
            end.user.as_deref(),
            &end.tls,
            end.backend.as_deref(),
        );
        pairs
            .add("bytes-in", end.bytes_in)
            .add("bytes-out", end.bytes_out)
            .add(
                "duration",
                format_args!("{:.3}s", end.duration.as_secs_f64()),
            )
            .add(
                "reason",
                end.reason.as_ref().map_or("unknown", EndReason::token),
            )
            .add_some("detail", end.reason.as_ref().and_then(EndReason::detail));
        log!(level, "session end: {pairs}");
        if let Some(hook) = self.hooks.session_end.as_mut() {
            hook(&end);
        }
    }
}

#[cfg(test)]
mod tests;
