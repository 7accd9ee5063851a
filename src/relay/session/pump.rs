//! Moving bytes: the handshake, then client → backend and backend → client,
//! each as far as the sockets and the other side's capacity allow.

use std::io::{self, ErrorKind, Write};
use std::time::Instant;

use rustls::ProtocolVersion;

use super::ready::attempt;
use super::{Down, EndReason, Phase, Session, Status, Stream, Tls12Close, Up};
use crate::relay::handshake;
use crate::relay::tls_io::{self, Want};

/// Encrypted bytes queued for a client that is not reading (what rustls's
/// default buffer limit was): the backend is read only for the room left.
pub(super) const OUTPUT_LIMIT: usize = 64 * 1024;
/// Less room than this and the backend waits (no tiny reads).
const MIN_READ: usize = 16 * 1024;

impl Session {
    /// Does every step that can be done now, until both sockets would block
    /// or wait on the other side's capacity. `backend` is `None` until its
    /// connect completed; `scratch` is where backend bytes are read into
    /// (its length caps one read; the daemon's is 64 KiB). Never blocks,
    /// never fails: socket and TLS errors end the session
    /// ([`Session::end_reason`]).
    pub fn pump<C: Stream, B: Stream>(
        &mut self,
        client: &mut C,
        mut backend: Option<&mut B>,
        scratch: &mut [u8],
        now: Instant,
    ) -> Status {
        loop {
            let step = match self.phase {
                Phase::Handshaking => self.handshake_step(client),
                Phase::Connecting => self.flush_client(client),
                Phase::Relaying(_) => self.relay_step(client, backend.as_deref_mut(), scratch),
                Phase::Ended => return Status::Ended,
            };
            match step {
                Ok(true) => {
                    // Discarded input does not keep a session alive.
                    if self.relaying() && self.up != Up::Discarding {
                        self.last_activity = now;
                    }
                }
                Ok(false) => break,
                Err(reason) => {
                    if self.alert_pending {
                        // rustls queued an alert saying why; one attempt.
                        let _ = self.tls.write_to(client);
                    }
                    self.end(reason);
                    return Status::Ended;
                }
            }
        }
        match self.phase {
            Phase::Handshaking if !self.tls.is_handshaking() => Status::HandshakeDone,
            Phase::Relaying(_) if self.up == Up::Shut && self.down == Down::Shut => {
                self.phase = Phase::Ended;
                Status::Ended
            }
            _ => {
                // Waiting on readiness: empty buffers go back to the allocator.
                self.tls.release_idle();
                Status::Continue
            }
        }
    }

    fn handshake_step<C: Stream>(&mut self, client: &mut C) -> Result<bool, EndReason> {
        let mut progress = self.read_client(client)?;
        handshake::take_presented_certificate();
        let processed = self.tls_process::<C>(None, Want::Nothing);
        if let Some(cert) = handshake::take_presented_certificate() {
            self.presented = Some(cert);
        }
        progress |= processed?.progress;
        progress |= self.flush_client(client)?;
        if self.client_eof && self.tls.is_handshaking() {
            return Err(EndReason::HandshakeFailed(
                "client closed the connection".into(),
            ));
        }
        Ok(progress && self.tls.is_handshaking())
    }

    fn relay_step<C: Stream, B: Stream>(
        &mut self,
        client: &mut C,
        mut backend: Option<&mut B>,
        scratch: &mut [u8],
    ) -> Result<bool, EndReason> {
        let mut progress = self.read_client(client)?;
        progress |= self
            .tls_process(backend.as_deref_mut(), Want::Nothing)?
            .progress;
        if self.up == Up::Discarding && (self.tls.peer_closed() || self.client_eof) {
            self.up = Up::Shut;
            progress = true;
        }
        progress |= self.pump_up(backend.as_deref_mut())?;
        progress |= self.pump_down(backend, scratch)?;
        progress |= self.flush_client(client)?;
        if self.down == Down::Notified && !self.tls.wants_write() {
            // The peer may already be gone; the close_notify is out either way.
            let _ = client.shutdown_write();
            self.down = Down::Shut;
            progress = true;
        }
        Ok(progress)
    }

    /// Client socket → input buffer, one read.
    fn read_client<C: Stream>(&mut self, client: &mut C) -> Result<bool, EndReason> {
        let room = match self.phase {
            // Like rustls: no more input while our own flight is unsent.
            Phase::Handshaking => !self.tls.wants_write(),
            Phase::Relaying(_) => match self.up {
                Up::Shut => false,
                Up::Discarding => true,
                // Backpressure: the backend has taken everything decrypted so far.
                Up::Open | Up::Draining => self.to_backend.is_empty(),
            },
            Phase::Connecting | Phase::Ended => false,
        };
        if !room || self.client_eof || self.tls.peer_closed() {
            return Ok(false);
        }
        let tls = &mut self.tls;
        match attempt(&mut self.ready.client.read, || tls.read_from(client)) {
            None => return Ok(false),
            Some(Ok(0)) => self.client_eof = true,
            Some(Ok(_)) => self.client_spoke = true,
            Some(Err(e)) if e.kind() == ErrorKind::InvalidData => {
                return Err(self.tls_failed(e.to_string()));
            }
            Some(Err(e)) => return Err(self.client_failed(e)),
        }
        Ok(true)
    }

    /// Runs rustls over what was read (records to the backend once
    /// relaying), then does `want`.
    fn tls_process<B: Stream>(
        &mut self,
        backend: Option<&mut B>,
        want: Want<'_>,
    ) -> Result<tls_io::Done, EndReason> {
        let take_records = self.relaying();
        let Session {
            tls,
            to_backend,
            ready,
            up,
            bytes_up,
            ..
        } = self;
        let mut backend = backend;
        let mut failed: Option<io::Error> = None;
        let mut deliver = |data: &[u8]| {
            if matches!(*up, Up::Shut | Up::Discarding) || failed.is_some() {
                return;
            }
            *bytes_up += data.len() as u64;
            let mut written = 0;
            if to_backend.is_empty() {
                if let Some(b) = backend.as_deref_mut() {
                    failed = write_some(b, data, &mut written, &mut ready.backend.write).err();
                }
            }
            if failed.is_none() {
                to_backend.push(&data[written..]);
            }
        };
        let done = tls.process(take_records, want, &mut deliver);
        if let Some(e) = failed {
            self.backend_write_failed(e);
        }
        done.map_err(|e| self.tls_failed(handshake::describe_error(&e)))
    }

    fn tls_failed(&mut self, why: String) -> EndReason {
        self.alert_pending = true;
        if self.phase == Phase::Handshaking {
            EndReason::HandshakeFailed(why)
        } else {
            EndReason::TlsError(why)
        }
    }

    /// Output buffer → client socket.
    fn flush_client<C: Stream>(&mut self, client: &mut C) -> Result<bool, EndReason> {
        let mut progress = false;
        while self.tls.wants_write() {
            let tls = &mut self.tls;
            match attempt(&mut self.ready.client.write, || tls.write_to(client)) {
                None => break,
                Some(Ok(0)) => return Err(self.client_failed(ErrorKind::WriteZero.into())),
                Some(Ok(_)) => progress = true,
                Some(Err(e)) => return Err(self.client_failed(e)),
            }
        }
        Ok(progress)
    }

    pub(super) fn client_failed(&self, e: io::Error) -> EndReason {
        if self.phase == Phase::Handshaking {
            EndReason::HandshakeFailed(e.to_string())
        } else {
            EndReason::ClientReset(e.to_string())
        }
    }

    /// Pending client bytes → backend; then the client's end of stream,
    /// once everything before it has gone: close_notify → backend EOF.
    fn pump_up<B: Stream>(&mut self, backend: Option<&mut B>) -> Result<bool, EndReason> {
        let Some(backend) = backend else {
            return Ok(false);
        };
        if matches!(self.up, Up::Shut | Up::Discarding) {
            return Ok(false);
        }
        let mut progress = false;
        if !self.to_backend.is_empty() {
            let to_backend = &mut self.to_backend;
            match attempt(&mut self.ready.backend.write, || {
                to_backend.write_to(backend)
            }) {
                None => return Ok(false),
                Some(Ok(_)) => progress = true,
                Some(Err(e)) => return Ok(self.backend_write_failed(e)),
            }
            if !self.to_backend.is_empty() {
                return Ok(progress);
            }
        }
        if self.up == Up::Draining {
            // A peer that already closed makes this fail; it has its EOF then.
            let _ = backend.shutdown_write();
            self.up = Up::Shut;
            return Ok(true);
        }
        if self.tls.peer_closed() {
            self.client_close_notify();
            return Ok(true);
        }
        if self.client_eof && self.tls.drained() {
            // End of stream without close_notify (perhaps mid-record).
            return Err(EndReason::ClientEof);
        }
        Ok(progress)
    }

    /// The backend stopped taking bytes. If it had already closed (ConfD
    /// closes fully), the rest of the client's input has nowhere to go.
    fn backend_write_failed(&mut self, e: io::Error) -> bool {
        self.stop_up();
        if self.down == Down::Open {
            self.note(EndReason::BackendReset(e.to_string()));
            self.down = Down::Draining;
        }
        true
    }

    fn client_close_notify(&mut self) {
        self.note(EndReason::ClientCloseNotify);
        self.up = Up::Draining;
        let strict = self.limits.tls12_close == Tls12Close::Strict
            && self.tls.protocol_version() == Some(ProtocolVersion::TLSv1_2);
        if strict && matches!(self.down, Down::Open | Down::Draining) {
            self.to_client.clear();
            self.down = Down::Draining;
        }
    }

    /// Encrypts `data` for the client; what rustls cannot take yet waits in
    /// `to_client`.
    fn seal<B: Stream>(&mut self, backend: Option<&mut B>, data: &[u8]) -> Result<(), EndReason> {
        if !self.tls_process(backend, Want::Encrypt(data))?.wanted {
            self.to_client.push(data);
        }
        Ok(())
    }

    /// Backend bytes → encrypted output; backend EOF → close_notify.
    fn pump_down<B: Stream>(
        &mut self,
        mut backend: Option<&mut B>,
        scratch: &mut [u8],
    ) -> Result<bool, EndReason> {
        let mut progress = false;
        if !self.to_client.is_empty() {
            let pending = std::mem::take(&mut self.to_client);
            self.seal(backend.as_deref_mut(), pending.bytes())?;
            progress = self.to_client.is_empty();
            if !progress {
                return Ok(false);
            }
        }
        match self.down {
            Down::Open => {
                let Some(b) = backend.as_deref_mut() else {
                    return Ok(progress);
                };
                let room = OUTPUT_LIMIT.saturating_sub(self.tls.pending_output());
                if room < MIN_READ {
                    return Ok(progress);
                }
                let want = room.min(scratch.len());
                match attempt(&mut self.ready.backend.read, || {
                    b.read(&mut scratch[..want])
                }) {
                    None => return Ok(progress),
                    Some(Ok(0)) => {
                        self.note(EndReason::BackendClosed);
                        self.down = Down::Draining;
                    }
                    Some(Ok(n)) => {
                        self.bytes_down += n as u64;
                        self.seal(backend, &scratch[..n])?;
                    }
                    Some(Err(e)) => {
                        self.note(EndReason::BackendReset(e.to_string()));
                        self.down = Down::Draining;
                    }
                }
                Ok(true)
            }
            Down::Draining => {
                if self.tls_process(backend, Want::CloseNotify)?.wanted {
                    self.down = Down::Notified;
                    return Ok(true);
                }
                Ok(progress)
            }
            Down::Notified | Down::Shut => Ok(progress),
        }
    }
}

/// Writes `data[*written..]` while `writable`; a would-block clears it.
fn write_some(
    w: &mut impl Write,
    data: &[u8],
    written: &mut usize,
    writable: &mut bool,
) -> io::Result<()> {
    while *written < data.len() {
        match attempt(writable, || w.write(&data[*written..])) {
            None => break,
            Some(Ok(0)) => return Err(ErrorKind::WriteZero.into()),
            Some(Ok(n)) => *written += n,
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(())
}
