//! The plain-TCP backend behind the relay under test: one mio thread.
//!
//! Each connection starts with one command line (after an optional ConfD
//! header line, `[...]\n`, which nctls writes and the other relays do not):
//! - `SINK n`: read n bytes (0: until EOF), answer `ok\n`, wait for EOF.
//! - `SOURCE n`: write n bytes (0: until the peer closes), then close.
//! - `ECHO n`: echo n bytes back, then close first (like `<close-session>`).
//! - `CLOSE id`: close at once, noting the time under `id` (close latency).
//! - `IDLE`: answer `ok\n`, then wait for EOF.
//! - `READY`: answer `ok\n`, then wait for the next command.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const LISTENER: Token = Token(usize::MAX);
/// Longest header or command line accepted.
const MAX_LINE: usize = 4096;
/// Reads and writes per readiness event before other connections get a turn.
const BURST: usize = 64;

/// When the backend closed each `CLOSE id` connection.
pub type Closes = Arc<Mutex<HashMap<u64, Instant>>>;

pub struct Backend {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
    pub closes: Closes,
}

impl Backend {
    pub fn start(addr: SocketAddr) -> io::Result<Backend> {
        let mut listener = TcpListener::bind(addr)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let stop = Arc::new(AtomicBool::new(false));
        let closes = Closes::default();
        let mut state = Loop {
            poll,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            closes: closes.clone(),
            stop: stop.clone(),
            scratch: vec![0x5a; 256 * 1024],
        };
        let thread = thread::Builder::new()
            .name("backend".into())
            .spawn(move || state.run())?;
        Ok(Backend {
            stop,
            thread: Some(thread),
            closes,
        })
    }

    pub fn stop(mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("backend thread panicked")),
            None => Ok(()),
        }
    }
}

#[derive(Debug)]
enum Mode {
    /// Reading the header and command lines.
    Command {
        line: Vec<u8>,
        header_done: bool,
    },
    Sink {
        left: u64,
    },
    Source {
        left: u64,
    },
    Echo {
        left: u64,
    },
    /// Reply sent; wait for EOF.
    Drain,
}

struct Conn {
    sock: TcpStream,
    mode: Mode,
    out: Vec<u8>,
    /// Close once `out` is flushed (and, for `Source`, the count is reached).
    close_after_flush: bool,
    readable: bool,
    writable: bool,
}

struct Loop {
    poll: Poll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    closes: Closes,
    stop: Arc<AtomicBool>,
    scratch: Vec<u8>,
}

enum Next {
    Keep,
    Close,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut again: Vec<usize> = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = if again.is_empty() {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            let mut todo = std::mem::take(&mut again);
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    self.accept()?;
                    continue;
                }
                let i = ev.token().0;
                if let Some(Some(c)) = self.conns.get_mut(i) {
                    c.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    c.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
                    todo.push(i);
                }
            }
            todo.sort_unstable();
            todo.dedup();
            for i in todo {
                let Some(Some(conn)) = self.conns.get_mut(i) else {
                    continue;
                };
                match step(conn, &mut self.scratch, &self.closes) {
                    Ok((Next::Keep, busy)) => {
                        if busy {
                            again.push(i);
                        }
                    }
                    Ok((Next::Close, _)) | Err(_) => {
                        if let Some(mut c) = self.conns[i].take() {
                            let _ = self.poll.registry().deregister(&mut c.sock);
                        }
                        self.free.push(i);
                    }
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self) -> io::Result<()> {
        for _ in 0..10_000 {
            match self.listener.accept() {
                Ok((mut sock, _)) => {
                    let _ = sock.set_nodelay(true);
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
                        mode: Mode::Command {
                            line: Vec::new(),
                            header_done: false,
                        },
                        out: Vec::new(),
                        close_after_flush: false,
                        readable: true,
                        writable: true,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("loadgen backend: accept: {e}");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Does what one connection can do now. Returns whether to keep it and
/// whether it stopped only because its burst ran out (then it runs again
/// without waiting for readiness, which edge-triggering would not repeat).
fn step(conn: &mut Conn, scratch: &mut [u8], closes: &Closes) -> io::Result<(Next, bool)> {
    for _ in 0..BURST {
        let mut progress = false;
        // Writes first: pending replies, then the source stream.
        if !conn.out.is_empty() && conn.writable {
            match conn.sock.write(&conn.out) {
                Ok(n) => {
                    conn.out.drain(..n);
                    progress = true;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => conn.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if conn.out.is_empty() && conn.close_after_flush {
            return Ok((Next::Close, false));
        }
        if let Mode::Source { left } = &mut conn.mode {
            if conn.writable && conn.out.is_empty() {
                let want = if *left == 0 {
                    scratch.len()
                } else {
                    (*left).min(scratch.len() as u64) as usize
                };
                match conn.sock.write(&scratch[..want]) {
                    Ok(n) => {
                        progress = true;
                        if *left != 0 {
                            *left -= n as u64;
                            if *left == 0 {
                                return Ok((Next::Close, false));
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => conn.writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if conn.readable {
            match conn.sock.read(scratch) {
                Ok(0) => return Ok((Next::Close, false)),
                Ok(n) => {
                    progress = true;
                    if let Some(next) = consume(conn, n, scratch, closes)? {
                        return Ok((next, false));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !progress {
            return Ok((Next::Keep, false));
        }
    }
    Ok((Next::Keep, true))
}

/// Handles `n` bytes just read into `scratch`.
fn consume(
    conn: &mut Conn,
    n: usize,
    scratch: &mut [u8],
    closes: &Closes,
) -> io::Result<Option<Next>> {
    let mut data = &scratch[..n];
    let mut echo: Vec<u8> = Vec::new();
    // A bounded walk: each pass consumes bytes or changes mode.
    for _ in 0..8 {
        if data.is_empty() {
            break;
        }
        match &mut conn.mode {
            Mode::Command { line, header_done } => {
                let Some(end) = data.iter().position(|&b| b == b'\n') else {
                    line.extend_from_slice(data);
                    if line.len() > MAX_LINE {
                        return Err(io::Error::other("command line too long"));
                    }
                    return Ok(None);
                };
                line.extend_from_slice(&data[..end]);
                data = &data[end + 1..];
                let text = String::from_utf8_lossy(line).into_owned();
                line.clear();
                if !*header_done && text.starts_with('[') {
                    *header_done = true;
                    continue;
                }
                let mut words = text.split_whitespace();
                let verb = words.next().unwrap_or("");
                let arg: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                match verb {
                    "SINK" if arg == 0 => conn.mode = Mode::Drain,
                    "SINK" => conn.mode = Mode::Sink { left: arg },
                    "SOURCE" => conn.mode = Mode::Source { left: arg },
                    "ECHO" => conn.mode = Mode::Echo { left: arg },
                    "IDLE" => {
                        conn.out.extend_from_slice(b"ok\n");
                        conn.mode = Mode::Drain;
                    }
                    "READY" => conn.out.extend_from_slice(b"ok\n"),
                    "CLOSE" => {
                        if let Ok(mut m) = closes.lock() {
                            m.insert(arg, Instant::now());
                        }
                        return Ok(Some(Next::Close));
                    }
                    _ => return Err(io::Error::other(format!("unknown command {text:?}"))),
                }
            }
            Mode::Sink { left } => {
                let take = (*left).min(data.len() as u64);
                *left -= take;
                data = &data[take as usize..];
                if *left == 0 {
                    conn.out.extend_from_slice(b"ok\n");
                    conn.mode = Mode::Drain;
                }
            }
            Mode::Echo { left } => {
                let take = (*left).min(data.len() as u64) as usize;
                echo.extend_from_slice(&data[..take]);
                *left -= take as u64;
                data = &data[take..];
                if *left == 0 {
                    conn.close_after_flush = true;
                    conn.mode = Mode::Drain;
                }
            }
            Mode::Source { .. } | Mode::Drain => break,
        }
    }
    conn.out.extend_from_slice(&echo);
    Ok(None)
}
