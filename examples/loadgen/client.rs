//! Many rustls client sessions on one mio thread, each following a
//! [`Script`]: handshake, send a command and a payload, receive the reply,
//! then close, wait for the relay to close, or hold the session open.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// Rounds of read/encrypt/write per readiness event before other sessions
/// get a turn (the session is then run again without waiting).
const BURST: usize = 32;
/// Plaintext handed to rustls per write.
const CHUNK: usize = 64 * 1024;

static PATTERN: [u8; CHUNK] = [0xa5; CHUNK];

/// What one session does after its handshake.
#[derive(Clone, Debug)]
pub struct Script {
    pub command: Vec<u8>,
    /// Payload bytes sent after the command.
    pub upload: u64,
    /// Bytes to receive before the reply counts as complete.
    pub expect: u64,
    pub after: After,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Send close_notify, then wait for the relay to close.
    Close,
    /// Wait for the relay's close_notify, answer it, close.
    WaitClose,
    /// Keep the session open (still reading) until [`Engine::release`].
    Hold,
}

/// How one session went.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub id: u64,
    pub connected: Instant,
    pub handshaken: Option<Instant>,
    pub replied: Option<Instant>,
    /// When the relay's close_notify (or EOF) arrived.
    pub closed: Option<Instant>,
    /// The relay closed with close_notify (not a bare EOF or reset).
    pub clean: bool,
    pub received: u64,
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Held,
    /// Our close_notify is queued; waiting for the relay to close.
    Closing,
    Done,
}

struct Conn {
    sock: TcpStream,
    tls: ClientConnection,
    script: Script,
    phase: Phase,
    command_sent: bool,
    upload_left: u64,
    readable: bool,
    writable: bool,
    eof: bool,
    queued: bool,
    out: Outcome,
}

pub struct Engine {
    poll: Poll,
    config: Arc<ClientConfig>,
    relay: SocketAddr,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    again: Vec<usize>,
    scratch: Vec<u8>,
    pub outcomes: Vec<Outcome>,
    pub held: usize,
    active: usize,
    next_id: u64,
}

impl Engine {
    pub fn new(config: Arc<ClientConfig>, relay: SocketAddr) -> io::Result<Engine> {
        Ok(Engine {
            poll: Poll::new()?,
            config,
            relay,
            conns: Vec::new(),
            free: Vec::new(),
            again: Vec::new(),
            scratch: vec![0; CHUNK],
            outcomes: Vec::new(),
            held: 0,
            active: 0,
            next_id: 0,
        })
    }

    /// Runs `total` sessions, at most `concurrency` at a time (held sessions
    /// do not count), until each is done or held.
    pub fn run(
        &mut self,
        total: usize,
        concurrency: usize,
        script: &dyn Fn(u64) -> Script,
        deadline: Instant,
    ) -> Result<(), String> {
        let mut started = 0;
        let target_done = self.outcomes.len() + self.held + total;
        let mut events = Events::with_capacity(1024);
        while self.outcomes.len() + self.held < target_done {
            while started < total && self.active < concurrency {
                let id = self.next_id;
                self.next_id += 1;
                self.start(id, script(id))
                    .map_err(|e| format!("connect to {}: {e}", self.relay))?;
                started += 1;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out with {} of {total} sessions finished",
                    self.outcomes.len() + self.held + total - target_done
                ));
            }
            self.turn(&mut events, Duration::from_millis(100))?;
        }
        Ok(())
    }

    /// Keeps every session moving for `period` without starting new ones.
    pub fn run_for(&mut self, period: Duration) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        let end = Instant::now() + period;
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            self.turn(&mut events, end - now)?;
        }
    }

    /// Closes every held session (close_notify first) and waits until all
    /// are done.
    pub fn release(&mut self, deadline: Instant) -> Result<(), String> {
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_mut() {
                if c.phase == Phase::Held {
                    c.tls.send_close_notify();
                    c.phase = Phase::Closing;
                    self.held -= 1;
                    self.active += 1;
                    self.queue(i);
                }
            }
        }
        let mut events = Events::with_capacity(1024);
        while self.active > 0 {
            if Instant::now() > deadline {
                return Err(format!("{} sessions did not close in time", self.active));
            }
            self.turn(&mut events, Duration::from_millis(100))?;
        }
        Ok(())
    }

    /// Sends `data` on every held session (which keeps reading).
    pub fn send_all(&mut self, data: &[u8]) -> Result<(), String> {
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_mut() {
                if c.phase == Phase::Held {
                    c.tls
                        .writer()
                        .write_all(data)
                        .map_err(|e| format!("write: {e}"))?;
                    self.queue(i);
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, id: u64, script: Script) -> io::Result<()> {
        let mut sock = TcpStream::connect(self.relay)?;
        sock.set_nodelay(true)?;
        let tls = ClientConnection::new(
            self.config.clone(),
            ServerName::try_from("localhost").expect("valid name"),
        )
        .map_err(io::Error::other)?;
        let i = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        self.poll.registry().register(
            &mut sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.conns[i] = Some(Conn {
            sock,
            tls,
            upload_left: script.upload,
            script,
            phase: Phase::Running,
            command_sent: false,
            readable: false,
            writable: false,
            eof: false,
            queued: false,
            out: Outcome {
                id,
                connected: Instant::now(),
                handshaken: None,
                replied: None,
                closed: None,
                clean: false,
                received: 0,
                error: None,
            },
        });
        self.active += 1;
        Ok(())
    }

    fn queue(&mut self, i: usize) {
        if let Some(c) = self.conns[i].as_mut() {
            if !c.queued {
                c.queued = true;
                self.again.push(i);
            }
        }
    }

    /// One poll and the work it allows.
    fn turn(&mut self, events: &mut Events, wait: Duration) -> Result<(), String> {
        let wait = if self.again.is_empty() {
            wait
        } else {
            Duration::ZERO
        };
        match self.poll.poll(events, Some(wait)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
            Ok(()) => {}
        }
        for ev in events.iter() {
            let i = ev.token().0;
            if let Some(Some(c)) = self.conns.get_mut(i) {
                c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
            }
            self.queue(i);
        }
        let todo = std::mem::take(&mut self.again);
        for i in todo {
            let Some(conn) = self.conns[i].as_mut() else {
                continue;
            };
            conn.queued = false;
            let was = conn.phase;
            let busy = conn.step(&mut self.scratch);
            let now = conn.phase;
            if was == Phase::Running && now == Phase::Held {
                self.held += 1;
                self.active -= 1;
            }
            if now == Phase::Done {
                let mut c = self.conns[i].take().expect("present");
                let _ = self.poll.registry().deregister(&mut c.sock);
                if was != Phase::Held {
                    self.active -= 1;
                } else {
                    self.held -= 1;
                }
                self.outcomes.push(c.out);
                self.free.push(i);
            } else if busy {
                self.queue(i);
            }
        }
        Ok(())
    }
}

impl Conn {
    /// Moves bytes until the socket blocks or the burst runs out; returns
    /// whether it should run again without waiting for readiness.
    fn step(&mut self, scratch: &mut [u8]) -> bool {
        for _ in 0..BURST {
            match self.round(scratch) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    self.fail(e);
                    return false;
                }
            }
            if self.phase == Phase::Done {
                return false;
            }
        }
        true
    }

    fn fail(&mut self, e: String) {
        if self.out.error.is_none() && matches!(self.phase, Phase::Running | Phase::Held) {
            self.out.error = Some(e);
        }
        self.phase = Phase::Done;
    }

    /// One round of reading, reacting and writing; true if anything moved.
    fn round(&mut self, scratch: &mut [u8]) -> Result<bool, String> {
        let mut progress = false;
        if self.readable && !self.eof {
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => {
                    self.eof = true;
                    progress = true;
                }
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => progress = true,
                Err(e) => return Err(format!("read: {e}")),
            }
            if progress {
                self.tls
                    .process_new_packets()
                    .map_err(|e| format!("tls: {e}"))?;
            }
        }
        let now = Instant::now();
        if self.out.handshaken.is_none() && !self.tls.is_handshaking() {
            self.out.handshaken = Some(now);
        }
        // Plaintext from the relay.
        loop {
            match self.tls.reader().read(scratch) {
                Ok(0) => {
                    self.out.closed.get_or_insert(now);
                    self.out.clean = true;
                    break;
                }
                Ok(n) => {
                    self.out.received += n as u64;
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    // A bare EOF or reset: the relay closed without close_notify.
                    self.out.closed.get_or_insert(now);
                    break;
                }
            }
        }
        if self.eof && self.out.closed.is_none() {
            self.out.closed = Some(now);
        }
        if self.out.replied.is_none()
            && self.command_sent
            && self.upload_left == 0
            && self.out.received >= self.script.expect
        {
            self.out.replied = Some(now);
            match self.script.after {
                After::Close => {
                    self.tls.send_close_notify();
                    self.phase = Phase::Closing;
                }
                After::WaitClose => {}
                After::Hold => self.phase = Phase::Held,
            }
            progress = true;
        }
        if self.out.closed.is_some() {
            if self.out.replied.is_none() {
                return Err(format!(
                    "relay closed after {} of {} bytes",
                    self.out.received, self.script.expect
                ));
            }
            if self.phase != Phase::Closing && self.out.clean {
                self.tls.send_close_notify();
            }
            let _ = self.tls.write_tls(&mut self.sock);
            self.phase = Phase::Done;
            return Ok(false);
        }
        // Command and payload into rustls, then out to the socket.
        if !self.tls.is_handshaking() && self.phase == Phase::Running {
            if !self.command_sent {
                self.tls
                    .writer()
                    .write_all(&self.script.command)
                    .map_err(|e| format!("write: {e}"))?;
                self.command_sent = true;
                progress = true;
            }
            if self.upload_left > 0 {
                let want = self.upload_left.min(CHUNK as u64) as usize;
                let n = self.tls.writer().write(&PATTERN[..want]).unwrap_or(0);
                self.upload_left -= n as u64;
                progress |= n > 0;
            }
        }
        while self.writable && self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => progress = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(progress)
    }
}
