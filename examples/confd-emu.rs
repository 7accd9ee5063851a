//! confd-emu: a small ConfD-like NETCONF backend on plain TCP, for nctls tests
//! and the demo.
//!
//! It checks the ConfD session header that the relay writes first, in
//! either form (`[USER;SOURCE;PROTO;UID;GID;SUBGIDS;HOMEDIR;GROUPS;]\n`, or
//! `b64[...]\n` with the user name in base64), sends a NETCONF
//! 1.0 hello and answers a few RPCs (get, get-config, lock, unlock,
//! close-session, kill-session) by substring matching. It is an emulator, not
//! an XML parser. Like ConfD it ends a session by closing the TCP socket.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::process::exit;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

const USAGE: &str =
    "usage: confd-emu [--listen ADDR:PORT] [--header confd|none] [--get-size BYTES]";
const EOM: &[u8] = b"]]>]]>";
const NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";
/// Longest header line we accept; real ones are well under 1 KiB.
const MAX_HEADER: u64 = 4096;
/// Longest NETCONF message we buffer before giving up on a client.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("confd-emu: {}", format_args!($($arg)*)) };
}

struct Options {
    listen: String,
    expect_header: bool,
    get_size: usize,
}

/// A live session, as seen by other sessions.
struct Peer {
    /// Clone of the session's socket, so kill-session can shut it down.
    socket: TcpStream,
    /// Set when another session killed this one (for the end-of-session log).
    killed_by: Option<u32>,
}

#[derive(Default)]
struct State {
    next_id: u32,
    sessions: HashMap<u32, Peer>,
    /// Holder of the single global lock on `running`.
    lock_holder: Option<u32>,
}

type Shared = Arc<Mutex<State>>;

/// Lock the shared state. We never panic while holding it, but a poisoned
/// mutex must not take the whole emulator down either.
fn state(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn parse_args() -> Options {
    let mut opts = Options {
        listen: "127.0.0.1:2023".to_string(),
        expect_header: true,
        get_size: 1024,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage_error(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                exit(0);
            }
            "--listen" => opts.listen = value(),
            "--header" => {
                opts.expect_header = match value().as_str() {
                    "confd" => true,
                    "none" => false,
                    other => usage_error(&format!("bad --header value {other:?}")),
                }
            }
            "--get-size" => {
                let v = value();
                opts.get_size = v
                    .parse()
                    .unwrap_or_else(|_| usage_error(&format!("bad --get-size {v:?}")));
            }
            other => usage_error(&format!("unknown argument {other:?}")),
        }
    }
    opts
}

fn usage_error(msg: &str) -> ! {
    eprintln!("confd-emu: {msg}\n{USAGE}");
    exit(2);
}

fn main() {
    let opts = Arc::new(parse_args());
    let listener = TcpListener::bind(&opts.listen).unwrap_or_else(|e| {
        log!("cannot listen on {}: {e}", opts.listen);
        exit(1);
    });
    // Print the real address so tests can use `--listen 127.0.0.1:0`.
    match listener.local_addr() {
        Ok(addr) => log!("listening on {addr}"),
        Err(_) => log!("listening on {}", opts.listen),
    }
    let shared: Shared = Arc::default();
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let (opts, shared) = (Arc::clone(&opts), Arc::clone(&shared));
                thread::spawn(move || handle_connection(stream, &opts, &shared));
            }
            Err(e) => log!("accept failed: {e}"),
        }
    }
}

fn handle_connection(stream: TcpStream, opts: &Options, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    let who = if opts.expect_header {
        match read_header(&mut reader) {
            Ok((h, form)) => format!(
                "user={} source={} proto={} uid={} gid={} home={}{form}",
                shown(&h[0]),
                h[1],
                h[2],
                h[3],
                h[4],
                h[6]
            ),
            Err(reason) => {
                log!("header rejected: {reason}");
                return;
            }
        }
    } else {
        let peer = reader.get_ref().peer_addr();
        let peer = peer.map_or("unknown peer".to_string(), |a| a.to_string());
        format!("from {peer} (no header expected)")
    };
    let id = register(shared, reader.get_ref());
    log!("session {id}: {who}");
    run_session(id, reader, opts, shared);
}

/// Read and check ConfD's session header line; returns its 8 fields (the
/// user decoded) and, for the base64 form, ` form=b64` for the log.
/// The BufReader is kept by the caller, so bytes after the `\n` are not lost.
fn read_header(reader: &mut BufReader<TcpStream>) -> Result<(Vec<String>, &'static str), String> {
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read error: {e}"))?;
    if line.last() != Some(&b'\n') {
        return Err(match line.len() as u64 {
            0 => "connection closed before header".to_string(),
            MAX_HEADER => format!("no newline within {MAX_HEADER} bytes"),
            _ => "connection closed inside header".to_string(),
        });
    }
    let line = std::str::from_utf8(&line[..line.len() - 1]).map_err(|_| "header is not UTF-8")?;
    parse_header(line)
}

/// Both forms of the ConfD User Guide ("Internal TCP Transport"):
/// `[username;...]` and `b64[b64username;...]`, which differ only in how
/// the user name is written.
fn parse_header(line: &str) -> Result<(Vec<String>, &'static str), String> {
    let (line, form) = match line.strip_prefix("b64") {
        Some(rest) => (rest, " form=b64"),
        None => (line, ""),
    };
    let mut fields = parse_fields(line)?;
    if !form.is_empty() {
        let name = decode_base64(&fields[0]).ok_or("b64 user is not padded base64")?;
        fields[0] = String::from_utf8(name).map_err(|_| "b64 user is not UTF-8")?;
    }
    Ok((fields, form))
}

fn parse_fields(line: &str) -> Result<Vec<String>, String> {
    let inner = line
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or("header must be [...] followed by newline")?;
    let body = inner
        .strip_suffix(';')
        .ok_or("last field must end with ';'")?;
    let fields: Vec<&str> = body.split(';').collect();
    if fields.len() != 8 {
        return Err(format!("expected 8 fields, got {}", fields.len()));
    }
    if let Some(f) = fields
        .iter()
        .find(|f| f.chars().any(|c| c == '[' || c == ']' || c.is_control()))
    {
        return Err(format!("bad character in field {f:?}"));
    }
    if fields[0].is_empty() {
        return Err("empty user".to_string());
    }
    check_source(fields[1])?;
    for (name, value) in [("uid", fields[3]), ("gid", fields[4])] {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{name} {value:?} is not a decimal number"));
        }
    }
    Ok(fields.iter().map(|f| f.to_string()).collect())
}

/// RFC 4648 base64 (standard alphabet, `=` padding); `None` unless the
/// text is exactly what an encoder writes.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let quads: Vec<&[u8]> = text.as_bytes().chunks(4).collect();
    for (i, quad) in quads.iter().enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 < quads.len()) {
            return None;
        }
        let mut group = 0u32;
        for &c in &quad[..4 - pad] {
            group = group << 6 | u32::from(digit(c)?);
        }
        group <<= 6 * pad;
        let bytes = group.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
        // Bits below the last byte must be zero in canonical base64.
        if pad > 0 && bytes[4 - pad] != 0 {
            return None;
        }
    }
    Some(out)
}

/// A user name for the log: bare when plain, else quoted with Rust escapes,
/// so that every name shows exactly on one line.
fn shown(name: &str) -> String {
    let plain = |c: char| c.is_alphanumeric() || "-_.@+%".contains(c);
    match !name.is_empty() && name.chars().all(plain) {
        true => name.to_string(),
        false => format!("{name:?}"),
    }
}

/// SOURCE is `IP/port` (what nctls and the GnuTLS demo write, e.g.
/// `192.0.2.1/4711` or `::1/4711`) or a bare IP (what Tail-f's
/// netconf-console writes for `--tcp`); ConfD accepts both.
fn check_source(source: &str) -> Result<(), String> {
    let bad = || format!("source {source:?} is neither IP nor IP/port");
    let ip = match source.rsplit_once('/') {
        Some((ip, port)) => {
            port.parse::<u16>().map_err(|_| bad())?;
            ip
        }
        None => source,
    };
    ip.parse::<IpAddr>().map_err(|_| bad())?;
    Ok(())
}

/// Allocate the next session id and publish the socket for kill-session.
fn register(shared: &Shared, socket: &TcpStream) -> u32 {
    let mut st = state(shared);
    st.next_id += 1;
    let id = st.next_id;
    match socket.try_clone() {
        Ok(socket) => {
            st.sessions.insert(
                id,
                Peer {
                    socket,
                    killed_by: None,
                },
            );
        }
        Err(e) => log!("session {id}: cannot clone socket ({e}); it cannot be killed"),
    }
    id
}

/// How a session loop ended, before checking whether it was killed.
enum End {
    Eof,
    Error(String),
    CloseSession,
}

fn run_session(id: u32, mut reader: BufReader<TcpStream>, opts: &Options, shared: &Shared) {
    let hello = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><hello xmlns=\"{NS}\"><capabilities>\
         <capability>urn:ietf:params:netconf:base:1.0</capability></capabilities>\
         <session-id>{id}</session-id></hello>]]>]]>"
    );
    let end = match send(&reader, &hello) {
        Ok(()) => message_loop(id, &mut reader, opts, shared),
        Err(e) => End::Error(e.to_string()),
    };
    finish(id, end, reader.get_ref(), shared);
}

/// Read `]]>]]>`-framed messages and answer them until the session ends.
fn message_loop(
    id: u32,
    reader: &mut BufReader<TcpStream>,
    opts: &Options,
    shared: &Shared,
) -> End {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    let mut seen_hello = false;
    // Bytes before this offset are known not to start a delimiter.
    let mut scanned = 0;
    loop {
        // Answer every complete message already buffered (several may have
        // arrived in one read; the delimiter may span reads).
        while let Some(pos) = find(&buf[scanned..], EOM).map(|p| p + scanned) {
            let msg = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..pos + EOM.len());
            scanned = 0;
            if !seen_hello {
                seen_hello = true; // the client's hello: accept silently
                continue;
            }
            let (reply, close) = handle_rpc(id, &msg, opts, shared);
            if let Err(e) = send(reader, &reply) {
                return End::Error(e.to_string());
            }
            if close {
                return End::CloseSession;
            }
        }
        if buf.len() > MAX_MESSAGE {
            return End::Error(format!("message larger than {MAX_MESSAGE} bytes"));
        }
        scanned = buf.len().saturating_sub(EOM.len() - 1);
        match reader.read(&mut chunk) {
            Ok(0) => return End::Eof,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return End::Error(e.to_string()),
        }
    }
}

fn send(reader: &BufReader<TcpStream>, text: &str) -> std::io::Result<()> {
    let mut socket: &TcpStream = reader.get_ref();
    socket.write_all(text.as_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Unregister the session, release its lock, close its socket and log why it ended.
fn finish(id: u32, end: End, socket: &TcpStream, shared: &Shared) {
    let killed_by = {
        let mut st = state(shared);
        if st.lock_holder == Some(id) {
            st.lock_holder = None;
        }
        st.sessions.remove(&id).and_then(|p| p.killed_by)
    };
    // Dropping the clone above and the stream later closes the fd; shutdown
    // makes the close immediate even if some other handle were still around.
    let _ = socket.shutdown(Shutdown::Both);
    let why = match (killed_by, end) {
        (Some(killer), _) => format!("killed by {killer}"),
        (None, End::Eof) => "eof".to_string(),
        (None, End::Error(e)) => format!("error: {e}"),
        (None, End::CloseSession) => "close-session".to_string(),
    };
    log!("session {id} ended: {why}");
}

/// Build the reply to one RPC; the bool says whether to close the session after it.
fn handle_rpc(id: u32, msg: &str, opts: &Options, shared: &Shared) -> (String, bool) {
    let mut close = false;
    let body = if has_element(msg, "get") || has_element(msg, "get-config") {
        data_reply(opts.get_size)
    } else if has_element(msg, "lock") {
        lock(id, shared)
    } else if has_element(msg, "unlock") {
        unlock(id, shared)
    } else if has_element(msg, "close-session") {
        close = true;
        "<ok/>".to_string()
    } else if has_element(msg, "kill-session") {
        kill(id, msg, shared)
    } else {
        rpc_error("operation-not-supported", "unsupported operation", "")
    };
    let reply = match message_id(msg) {
        Some((q, mid)) => {
            format!("<rpc-reply message-id={q}{mid}{q} xmlns=\"{NS}\">{body}</rpc-reply>]]>]]>")
        }
        None => format!("<rpc-reply xmlns=\"{NS}\">{body}</rpc-reply>]]>]]>"),
    };
    (reply, close)
}

/// Local names of the start tags in `msg`, with their end offsets:
/// `<get>`, `<nc:get-config>` (ncclient prefixes every element) and
/// `<lock/>` give `get`, `get-config`, `lock`.
fn start_tags(msg: &str) -> impl Iterator<Item = (&str, usize)> {
    msg.match_indices('<').filter_map(move |(i, _)| {
        let rest = &msg[i + 1..];
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        let qname = &rest[..end];
        if qname.is_empty() || qname.starts_with(['?', '!']) {
            return None;
        }
        let local = qname.rsplit(':').next().unwrap_or(qname);
        let close = rest.find('>')?;
        Some((local, i + 1 + close + 1))
    })
}

/// True if `msg` has an element named `name`, whatever its prefix, so
/// `get` does not match `get-config`.
fn has_element(msg: &str, name: &str) -> bool {
    start_tags(msg).any(|(local, _)| local == name)
}

/// The text of the first element named `name`, whatever its prefix.
fn element_text<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let (_, start) = start_tags(msg).find(|(local, _)| *local == name)?;
    let len = msg[start..].find('<')?;
    Some(&msg[start..start + len])
}

/// The rpc's message-id attribute value and its quote character.
fn message_id(msg: &str) -> Option<(char, &str)> {
    let rest = &msg[msg.find("message-id=")? + "message-id=".len()..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some((quote, &value[..value.find(quote)?]))
}

/// `<data>` with `size` bytes of filler: whole `<x>` lines padded with
/// spaces. Lines are about 1 KiB, like real config entries: libyang (in
/// libnetconf2) parses tens of thousands of tiny siblings very slowly.
fn data_reply(size: usize) -> String {
    let line = format!(
        "<x>nctls filler {}</x>\n",
        "0123456789 abcdefghijklmnopqrstuvwxyz ".repeat(26)
    );
    let mut data = line.repeat(size / line.len());
    data.push_str(&" ".repeat(size % line.len()));
    format!("<data>{data}</data>")
}

fn lock(id: u32, shared: &Shared) -> String {
    let mut st = state(shared);
    match st.lock_holder {
        Some(holder) if holder != id => rpc_error(
            "lock-denied",
            "lock is already held",
            &format!("<error-info><session-id>{holder}</session-id></error-info>"),
        ),
        _ => {
            st.lock_holder = Some(id);
            "<ok/>".to_string()
        }
    }
}

fn unlock(id: u32, shared: &Shared) -> String {
    let mut st = state(shared);
    if st.lock_holder == Some(id) {
        st.lock_holder = None;
        "<ok/>".to_string()
    } else {
        rpc_error("operation-failed", "lock is not held by this session", "")
    }
}

/// Shut the target's socket down like ConfD does; its own thread then sees
/// EOF/error and logs "killed by".
fn kill(id: u32, msg: &str, shared: &Shared) -> String {
    let target = element_text(msg, "session-id").and_then(|s| s.trim().parse::<u32>().ok());
    let mut st = state(shared);
    let Some(target) = target.filter(|t| *t != id && st.sessions.contains_key(t)) else {
        return rpc_error("invalid-value", "no such other session", "");
    };
    if let Some(peer) = st.sessions.get_mut(&target) {
        peer.killed_by = Some(id);
        if let Err(e) = peer.socket.shutdown(Shutdown::Both) {
            log!("session {id}: shutdown of session {target} failed: {e}");
        }
    }
    if st.lock_holder == Some(target) {
        st.lock_holder = None;
    }
    log!("session {id}: killed session {target}");
    "<ok/>".to_string()
}

fn rpc_error(tag: &str, message: &str, info: &str) -> String {
    format!(
        "<rpc-error><error-type>protocol</error-type><error-tag>{tag}</error-tag>\
         <error-severity>error</error-severity>\
         <error-message xml:lang=\"en\">{message}</error-message>{info}</rpc-error>"
    )
}
