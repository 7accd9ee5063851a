//! One TLS server connection with the byte buffers it needs owned here:
//! rustls's unbuffered connection, the TLS bytes read from the client, and
//! the TLS bytes to send to it.
//!
//! Why not rustls's buffered `ServerConnection`: it reads the socket 4 KiB at
//! a time (four system calls per full record, each sending an ACK), shrinks
//! and regrows its input buffer around every record, copies every outgoing
//! record into its own allocation, and keeps a 4 KiB input buffer for the
//! life of an idle session. Here reads are up to 64 KiB, outgoing records
//! are encrypted straight into one buffer sent with one write, and both
//! buffers are released whenever the session waits with them empty, so an
//! idle session holds only rustls's own state.
//!
//! rustls's unbuffered API hands out one state at a time and only reaches
//! "may encrypt" once every decrypted record has been taken; callers take
//! records as they come (see [`TlsIo::process`]).

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ProtocolVersion, ServerConfig, SupportedCipherSuite};

/// The input buffer: room for several full records, so the partial record
/// left at the end of a read is moved to the front only now and then.
#[cfg(not(test))]
const INPUT_SIZE: usize = 64 * 1024;
/// Unit tests use less than a record, so moving and growing run all the time.
#[cfg(test)]
const INPUT_SIZE: usize = 8 * 1024;
/// Largest TLS record on the wire (TLS 1.2 allows 2 KiB of expansion).
const MAX_RECORD: usize = 5 + 16 * 1024 + 2048;
/// rustls accepts handshake messages up to 64 KiB; they must fit whole,
/// with their record framing.
const MAX_INPUT: usize = 128 * 1024;
/// Room asked for beyond the plaintext when encrypting: record headers,
/// tags and pending control messages. A shortfall is retried exactly.
const SEAL_SLACK: usize = 1024;
/// States handled per call; a peer sending many tiny records gets the rest
/// on the next call.
const MAX_STATES: usize = 1024;

/// What to do once rustls may encrypt.
#[derive(Clone, Copy, Debug)]
pub enum Want<'a> {
    /// Only process what was read.
    Nothing,
    /// Encrypt these plaintext bytes for the client, all or none.
    Encrypt(&'a [u8]),
    /// Queue our close_notify.
    CloseNotify,
}

/// What [`TlsIo::process`] got done.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done {
    /// Input consumed, output produced or state changed.
    pub progress: bool,
    /// The [`Want`] was carried out.
    pub wanted: bool,
}

/// One server-side TLS connection (rustls's unbuffered API) with the TLS
/// bytes read from the client and those to send to it: reads of up to
/// 64 KiB, records encrypted straight into the output and sent with one
/// write, both buffers freed while the session waits empty (see the module
/// documentation).
pub struct TlsIo {
    conn: UnbufferedServerConnection,
    /// `input[in_start..in_end]` is read but not yet discarded by rustls.
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// `output[out_start..out_end]` is encrypted but not yet sent.
    output: Vec<u8>,
    out_start: usize,
    out_end: usize,
    /// The client's close_notify has been processed.
    peer_closed: bool,
    /// The last `process` stopped for want of input (no whole record left).
    drained: bool,
}

impl TlsIo {
    /// A connection waiting for the client's first handshake record.
    /// Errors: rustls could not start one with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Result<TlsIo, rustls::Error> {
        Ok(TlsIo {
            conn: UnbufferedServerConnection::new(config)?,
            input: Vec::new(),
            in_start: 0,
            in_end: 0,
            output: Vec::new(),
            out_start: 0,
            out_end: 0,
            peer_closed: false,
            drained: true,
        })
    }

    /// The handshake has not completed yet.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The client's verified chain, end-entity first, once known.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// The TLS version agreed, once known.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The cipher suite agreed, once known.
    pub fn negotiated_cipher_suite(&self) -> Option<SupportedCipherSuite> {
        self.conn.negotiated_cipher_suite()
    }

    /// The client's close_notify has arrived (every record before it has
    /// been handed out).
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Every whole record read so far has been processed.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Encrypted bytes waiting for the client socket.
    pub fn pending_output(&self) -> usize {
        self.out_end - self.out_start
    }

    /// Some encrypted bytes wait for the client socket.
    pub fn wants_write(&self) -> bool {
        self.out_end > self.out_start
    }

    /// One read from `r` into the input buffer; `Ok(0)` is end of stream.
    pub fn read_from(&mut self, r: &mut impl Read) -> io::Result<usize> {
        if self.in_start > 0 && self.input.len() - self.in_end < MAX_RECORD {
            // Only a partial record is left: move it to the front.
            self.input.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
        if self.input.is_empty() {
            self.input = vec![0; INPUT_SIZE];
        } else if self.in_end == self.input.len() {
            // One message larger than the buffer (a big handshake message).
            if self.input.len() >= MAX_INPUT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS message too large",
                ));
            }
            self.input.resize((self.input.len() * 2).min(MAX_INPUT), 0);
        }
        let n = r.read(&mut self.input[self.in_end..])?;
        self.in_end += n;
        Ok(n)
    }

    /// One write of the pending output.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let n = w.write(&self.output[self.out_start..self.out_end])?;
        self.out_start += n;
        if self.out_start == self.out_end {
            self.out_start = 0;
            self.out_end = 0;
        }
        Ok(n)
    }

    /// Bytes allocated for the two buffers.
    #[cfg(test)]
    pub fn buffer_capacity(&self) -> usize {
        self.input.capacity() + self.output.capacity()
    }

    /// Frees whichever buffer is empty; call when the session waits.
    pub fn release_idle(&mut self) {
        if self.in_start == self.in_end {
            self.input = Vec::new();
            self.in_start = 0;
            self.in_end = 0;
        }
        if self.out_start == self.out_end {
            self.output = Vec::new();
            self.out_start = 0;
            self.out_end = 0;
        }
    }

    /// Runs rustls over the input read so far until it needs more bytes or
    /// may encrypt, then carries out `want`. Handshake messages and alerts
    /// go to the output. Decrypted records go to `deliver` when
    /// `take_records`; otherwise the first one stays inside rustls (it comes
    /// out first next time) and processing stops there, which means `want`
    /// cannot be carried out yet.
    ///
    /// On a TLS error the alert for the client is in the output.
    pub fn process(
        &mut self,
        take_records: bool,
        want: Want<'_>,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<Done, rustls::Error> {
        let mut done = Done::default();
        self.drained = false;
        for _ in 0..MAX_STATES {
            let UnbufferedStatus { mut discard, state } = self
                .conn
                .process_tls_records(&mut self.input[self.in_start..self.in_end]);
            let mut stop = false;
            match state {
                Err(e) => {
                    self.in_start += discard;
                    self.queue_alert();
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    if !take_records {
                        stop = true;
                    } else {
                        while let Some(record) = records.next_record() {
                            let record = record?;
                            discard += record.discard;
                            deliver(record.payload);
                        }
                        done.progress = true;
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encoder)) => {
                    let mut need = 0;
                    for _ in 0..2 {
                        reserve(
                            &mut self.output,
                            &mut self.out_start,
                            &mut self.out_end,
                            need,
                        );
                        match encoder.encode(&mut self.output[self.out_end..]) {
                            Ok(n) => {
                                self.out_end += n;
                                break;
                            }
                            Err(EncodeError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) => need = required_size,
                            Err(EncodeError::AlreadyEncoded) => break,
                        }
                    }
                    done.progress = true;
                }
                // The bytes are in our output; sending them is ours to do.
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    done.progress = true;
                }
                Ok(ConnectionState::BlockedHandshake) | Ok(ConnectionState::Closed) => {
                    self.drained = true;
                    stop = true;
                }
                Ok(ConnectionState::WriteTraffic(mut writer)) => {
                    self.drained = true;
                    stop = true;
                    let (data, close) = match want {
                        Want::Nothing => (&[][..], false),
                        Want::Encrypt(data) => (data, false),
                        Want::CloseNotify => (&[][..], true),
                    };
                    if close || !data.is_empty() {
                        let mut need = data.len() + SEAL_SLACK;
                        for _ in 0..2 {
                            reserve(
                                &mut self.output,
                                &mut self.out_start,
                                &mut self.out_end,
                                need,
                            );
                            let out = &mut self.output[self.out_end..];
                            let sealed = if close {
                                writer.queue_close_notify(out)
                            } else {
                                writer.encrypt(data, out)
                            };
                            match sealed {
                                Ok(n) => {
                                    self.out_end += n;
                                    done.wanted = true;
                                    done.progress = true;
                                    break;
                                }
                                Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                    required_size,
                                })) => need = required_size,
                                Err(EncryptError::EncryptExhausted) => {
                                    return Err(rustls::Error::EncryptError);
                                }
                            }
                        }
                    } else {
                        done.wanted = true;
                    }
                }
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    // Never offered (max_early_data_size is 0).
                    return Err(rustls::Error::General("unexpected early data".into()));
                }
                Ok(_) => stop = true,
            }
            if discard > 0 {
                self.in_start += discard;
                done.progress = true;
            }
            if self.in_start == self.in_end {
                self.in_start = 0;
                self.in_end = 0;
            }
            if stop {
                return Ok(done);
            }
        }
        // Out of turns: more states may be waiting; the caller comes back.
        done.progress = true;
        Ok(done)
    }

    /// After an error rustls has queued an alert; encode it for sending.
    fn queue_alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { state, .. } = self
                .conn
                .process_tls_records(&mut self.input[self.in_start..self.in_end]);
            let Ok(ConnectionState::EncodeTlsData(mut encoder)) = state else {
                return;
            };
            reserve(&mut self.output, &mut self.out_start, &mut self.out_end, 0);
            if let Ok(n) = encoder.encode(&mut self.output[self.out_end..]) {
                self.out_end += n;
            }
        }
    }
}

/// Makes room for at least `need` bytes (and a useful minimum) after
/// `out_end`, moving pending bytes to the front first.
fn reserve(buf: &mut Vec<u8>, start: &mut usize, end: &mut usize, need: usize) {
    let need = need.max(SEAL_SLACK * 4);
    if buf.len() - *end >= need {
        return;
    }
    if *start > 0 {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
    }
    if buf.len() - *end < need {
        buf.resize(*end + need, 0);
    }
}
