//! The cases: `rowN_...` for those of row N of the README's close-semantics
//! table ("How a session ends"), one or more per row; the others are named
//! for what they test.

use super::*;

#[test]
fn row1_backend_eof_delivers_everything_then_close_notify() {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut rig = Rig::relaying(version, Tls12Close::Strict);
        let data = bytes(300 * 1024);
        rig.backend_send(&data);
        rig.b.eof = true;
        rig.run();
        assert!(rig.received == data, "all bytes, in order");
        assert!(rig.client_saw_close_notify);
        assert!(
            rig.c.write_shut,
            "client write side shut after close_notify"
        );
        assert_eq!(rig.status, Status::Continue, "still reading the client");
        assert_eq!(
            rig.session.deadline(),
            Some(rig.now + Duration::from_secs(5))
        );
        // The client answers with its own close_notify: done.
        rig.client_close_notify();
        rig.run();
        assert_eq!(rig.status, Status::Ended);
        assert_eq!(rig.reason(), EndReason::BackendClosed);
        assert!(rig.b.write_shut);
    }
}

#[test]
fn row1_client_input_after_a_full_backend_close_is_dropped() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.b.eof = true;
    rig.run();
    assert!(rig.client_saw_close_notify);
    rig.b.reset = true; // ConfD closed the socket entirely
    rig.client_send(b"<rpc/>");
    rig.run();
    assert_eq!(rig.status, Status::Continue, "read and dropped");
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::BackendClosed);
}

#[test]
fn row2_tls13_client_close_notify_half_closes() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.client_send(b"<rpc><close-session/></rpc>");
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.b.output, b"<rpc><close-session/></rpc>");
    assert!(rig.b.write_shut, "backend sees EOF after the last byte");
    assert!(!rig.client_saw_close_notify, "the reply is still to come");
    rig.backend_send(b"<ok/>");
    rig.run();
    assert_eq!(rig.received, b"<ok/>");
    rig.b.eof = true;
    rig.run();
    assert!(rig.client_saw_close_notify);
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::ClientCloseNotify);
}

#[test]
fn row2_tls12_strict_answers_close_notify_at_once() {
    let mut rig = Rig::relaying(&rustls::version::TLS12, Tls12Close::Strict);
    rig.client_send(b"<rpc/>");
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.b.output, b"<rpc/>");
    assert!(rig.b.write_shut);
    assert!(rig.client_saw_close_notify, "answered at once");
    assert_eq!(rig.status, Status::Ended);
    rig.backend_send(b"late");
    rig.run();
    assert!(rig.received.is_empty(), "later output discarded");
}

#[test]
fn row2_tls12_half_close_policy_relays_the_rest() {
    let mut rig = Rig::relaying(&rustls::version::TLS12, Tls12Close::HalfClose);
    rig.client_close_notify();
    rig.run();
    assert!(rig.b.write_shut);
    assert!(!rig.client_saw_close_notify);
    rig.backend_send(b"<ok/>");
    rig.b.eof = true;
    rig.run();
    assert_eq!(rig.received, b"<ok/>");
    assert!(rig.client_saw_close_notify);
    assert_eq!(rig.status, Status::Ended);
}

#[test]
fn row2_drain_deadline_extends_while_data_flows() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.client_close_notify();
    rig.run();
    for _ in 0..5 {
        rig.now += Duration::from_secs(4);
        rig.backend_send(b"x");
        rig.run();
        rig.session.on_deadline(rig.now);
        assert!(rig.session.end_reason() == Some(&EndReason::ClientCloseNotify));
    }
    assert_eq!(rig.received, b"xxxxx");
    rig.advance(Duration::from_secs(5));
    assert!(rig.client_saw_close_notify, "drain expiry closes cleanly");
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::DrainTimeout);
}

#[test]
fn row3_ragged_client_eof_is_a_truncation() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.client_send(b"partial");
    rig.run();
    rig.c.eof = true;
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::ClientEof);
    assert!(rig.reason().is_truncation());
    assert!(!rig.b.write_shut, "no clean EOF to the backend");
}

#[test]
fn row3_client_reset_and_tls_garbage_are_truncations() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.c.reset = true;
    rig.run();
    assert!(matches!(rig.reason(), EndReason::ClientReset(_)));

    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.c.input.extend(b"\x17\x03\x03\x00\x05hello");
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(
        matches!(rig.reason(), EndReason::TlsError(_)),
        "{:?}",
        rig.reason()
    );
    assert!(rig.reason().is_truncation());
    assert!(rig.client_error.is_some(), "the client got an alert");
}

#[test]
fn row3_client_reset_reported_by_the_loop_ends_a_paused_session() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.b.room = 0;
    rig.client_send(&bytes(256 * 1024));
    rig.run();
    rig.session.client_reset("connection reset by peer".into());
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(rig.reason().is_truncation());
}

/// Found by the session fuzz target: a backend that closed only its
/// write side still reads the client's bytes, so a client that then
/// cuts its stream (here, bytes that are not TLS) must not leave it a
/// clean EOF, though the backend's close began the end.
#[test]
fn row3_a_stream_cut_after_the_backend_closed_resets_it() {
    for cut in ["eof", "garbage", "reset"] {
        let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
        rig.b.eof = true;
        rig.run();
        assert!(rig.client_saw_close_notify);
        rig.client_send(b"<rpc>");
        rig.run();
        assert_eq!(rig.b.output, b"<rpc>", "the backend still reads");
        match cut {
            "eof" => rig.c.eof = true,
            "garbage" => rig.c.input.extend(b"\x17\x03\x03\x00\x05hello"),
            _ => rig.session.client_reset("connection reset by peer".into()),
        }
        rig.run();
        assert_eq!(rig.status, Status::Ended, "{cut}");
        assert_eq!(
            rig.reason(),
            EndReason::BackendClosed,
            "{cut}: the first event"
        );
        assert!(rig.session.backend_needs_reset(), "{cut}");
        assert!(!rig.b.write_shut, "{cut}");
    }
    // The client's close_notify instead: a clean end, no reset.
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.b.eof = true;
    rig.run();
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(!rig.session.backend_needs_reset());
    assert!(rig.b.write_shut);
}

#[test]
fn row4_unreachable_backend_gets_close_notify() {
    let mut rig = Rig::tls13();
    rig.run();
    rig.session.admit(HEADER, rig.now);
    rig.session
        .backend_failed("connection refused".into(), rig.now);
    rig.run();
    assert!(rig.client_saw_close_notify);
    assert_eq!(rig.status, Status::Continue, "until the client closes");
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(matches!(rig.reason(), EndReason::BackendUnreachable(_)));
}

#[test]
fn row4_connect_timeout_gets_close_notify() {
    let mut rig = Rig::tls13();
    rig.run();
    rig.session.admit(HEADER, rig.now);
    assert!(rig.session.is_connecting());
    rig.advance(Duration::from_secs(10));
    assert!(rig.client_saw_close_notify);
    assert_eq!(rig.reason(), EndReason::ConnectTimeout);
    rig.c.eof = true; // the client answers with a FIN alone
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::ConnectTimeout);
}

#[test]
fn row5_handshake_failures_never_reach_the_backend() {
    // A client certificate from a CA the session does not trust.
    let stranger = pki::Ca::new("Stranger");
    let mut rig = Rig::with_chain(
        &rustls::version::TLS13,
        limits(Tls12Close::Strict),
        0,
        Some(&stranger),
    );
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(
        matches!(rig.reason(), EndReason::HandshakeFailed(_)),
        "{:?}",
        rig.reason()
    );
    assert!(rig.client_error.is_some(), "the client got an alert");
    assert!(rig.b.output.is_empty());

    // Not TLS at all.
    let mut rig = Rig::tls13();
    rig.c.input.extend(b"GET / HTTP/1.1\r\n\r\n");
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(
        matches!(rig.reason(), EndReason::HandshakeFailed(_)),
        "{:?}",
        rig.reason()
    );
    assert!(rig.b.output.is_empty());
}

#[test]
fn row6_handshake_timeout_ends_at_once() {
    let mut rig = Rig::tls13();
    assert_eq!(
        rig.session.deadline(),
        Some(rig.now + Duration::from_secs(10))
    );
    rig.now += Duration::from_secs(9);
    rig.session.on_deadline(rig.now);
    assert!(rig.session.end_reason().is_none(), "not yet");
    rig.now += Duration::from_secs(1);
    rig.session.on_deadline(rig.now);
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::HandshakeTimeout);
}

#[test]
fn row6_idle_timeout_closes_then_gives_up_on_a_silent_client() {
    let mut policy = limits(Tls12Close::Strict);
    policy.idle_timeout = Some(Duration::from_secs(60));
    let mut rig = Rig::new(&rustls::version::TLS13, policy);
    rig.run();
    rig.session.admit(HEADER, rig.now);
    rig.connect();
    rig.run();
    assert_eq!(
        rig.session.deadline(),
        Some(rig.now + Duration::from_secs(60))
    );
    rig.c.room = 0; // the client stopped reading
    rig.advance(Duration::from_secs(60));
    assert_eq!(rig.reason(), EndReason::IdleTimeout);
    assert_eq!(
        rig.status,
        Status::Continue,
        "close_notify cannot be flushed"
    );
    rig.advance(Duration::from_secs(5));
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::IdleTimeout);
}

#[test]
fn row7_shutdown_ends_with_close_notify() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.backend_send(b"pending");
    rig.session.shutdown(rig.now);
    rig.run();
    assert!(rig.client_saw_close_notify);
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::Shutdown);

    let mut rig = Rig::tls13();
    rig.session.shutdown(rig.now);
    rig.run();
    assert_eq!(rig.status, Status::Ended);
}

#[test]
fn header_goes_first_then_client_bytes() {
    let mut rig = Rig::tls13();
    rig.run();
    assert_eq!(rig.status, Status::HandshakeDone);
    // The client's first bytes arrive before the backend is even connected.
    rig.client_send(b"<hello/>");
    rig.session.admit(HEADER, rig.now);
    rig.run();
    assert!(rig.b.output.is_empty(), "nothing before the backend is up");
    rig.connect();
    rig.run();
    assert_eq!(rig.b.output, [HEADER, b"<hello/>"].concat());
    assert_eq!(rig.session.bytes().0, 8);
}

#[test]
fn slow_backend_pauses_the_client() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.b.room = 0;
    let data = bytes(1 << 20);
    rig.client_send(&data);
    rig.run();
    // rustls holds at most one record of plaintext; we hold at most one read.
    assert!(rig.session.to_backend.bytes().len() <= 16 * 1024);
    assert!(
        rig.c.input.len() > 900 * 1024,
        "the rest waits in the socket"
    );
    rig.b.room = usize::MAX;
    rig.run();
    assert!(rig.b.output == data);
}

#[test]
fn slow_client_pauses_the_backend() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.c.room = 0;
    let data = bytes(1 << 20);
    rig.backend_send(&data);
    rig.run();
    assert!(rig.session.to_client.bytes().len() <= 16 * 1024);
    // Record headers and tags on top of the plaintext limit.
    assert!(rig.session.tls.pending_output() <= OUTPUT_LIMIT + 1024);
    assert!(
        rig.b.input.len() > 900 * 1024,
        "the rest waits in the backend socket"
    );
    rig.c.room = usize::MAX;
    rig.run();
    assert!(rig.received == data);
}

#[test]
fn refused_identity_never_reaches_the_backend() {
    let mut rig = Rig::tls13();
    rig.run();
    rig.client_send(b"<hello/>");
    rig.session.refuse("no usable name".into(), rig.now);
    rig.run();
    assert!(rig.client_saw_close_notify);
    rig.client_close_notify();
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(rig.b.output.is_empty());
}

/// After our close_notify the client's input is read and dropped until
/// its close_notify or FIN (closing with unread input is a TCP reset):
/// a 1 MiB RPC pipelined right after the handshake is all read, none of
/// it relayed or counted, and reading it does not extend the drain.
#[test]
fn input_after_our_close_notify_is_read_and_dropped() {
    let mut rig = Rig::tls13();
    rig.run();
    rig.session.refuse("no usable name".into(), rig.now);
    rig.client_send(&bytes(1 << 20));
    rig.run();
    assert!(rig.client_saw_close_notify);
    assert!(rig.c.input.is_empty(), "all of it read");
    assert_eq!(rig.status, Status::Continue);
    assert_eq!(rig.session.bytes(), (0, 0));
    assert!(rig.b.output.is_empty());
    let deadline = rig.session.deadline();
    rig.now += Duration::from_secs(3);
    rig.client_send(b"more");
    rig.run();
    assert_eq!(
        rig.session.deadline(),
        deadline,
        "discarding is not activity"
    );
    rig.c.eof = true;
    rig.run();
    assert_eq!(rig.status, Status::Ended);
    assert!(matches!(rig.reason(), EndReason::Refused(_)));

    // A client that keeps sending is dropped at the deadline.
    let mut rig = Rig::relaying(&rustls::version::TLS12, Tls12Close::Strict);
    rig.session.shutdown(rig.now);
    rig.run();
    for _ in 0..4 {
        rig.now += Duration::from_secs(1);
        rig.client_send(b"<rpc/>");
        rig.run();
        rig.session.on_deadline(rig.now);
        assert_eq!(rig.status, Status::Continue);
    }
    rig.advance(Duration::from_secs(1));
    assert_eq!(rig.status, Status::Ended);
    assert_eq!(rig.reason(), EndReason::Shutdown);
}

#[test]
fn backend_reset_at_connect_gets_close_notify() {
    let mut rig = Rig::tls13();
    rig.run();
    rig.session.admit(HEADER, rig.now);
    rig.connect();
    rig.session.backend_reset("connection reset by peer".into());
    rig.run();
    assert!(rig.client_saw_close_notify);
    assert!(matches!(rig.reason(), EndReason::BackendReset(_)));
    assert!(
        rig.b.output.is_empty(),
        "nothing written to a reset backend"
    );
}

#[test]
fn backend_reset_closes_the_client_cleanly() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.backend_send(b"partial");
    rig.run();
    rig.b.reset = true;
    rig.run();
    assert_eq!(rig.received, b"partial");
    assert!(rig.client_saw_close_notify);
    assert!(matches!(rig.reason(), EndReason::BackendReset(_)));
}

#[test]
fn waiting_sessions_hold_no_buffers() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    assert_eq!(rig.session.tls.buffer_capacity(), 0, "after the handshake");
    let data = bytes(200 * 1024);
    rig.client_send(&data);
    rig.backend_send(&data);
    rig.run();
    assert!(rig.b.output == data && rig.received == data);
    assert_eq!(rig.session.tls.buffer_capacity(), 0, "after traffic");
}

#[test]
fn handshake_message_larger_than_a_read() {
    let mut rig = Rig::with_chain(
        &rustls::version::TLS13,
        limits(Tls12Close::Strict),
        120,
        None,
    );
    rig.run();
    assert_eq!(rig.status, Status::HandshakeDone);
    let chain = rig.session.peer_certificates().unwrap();
    let size: usize = chain.iter().map(|c| c.len()).sum();
    assert!(
        size > 40 * 1024,
        "client Certificate message of {size} bytes"
    );
}

#[test]
fn key_update_mid_session() {
    let mut rig = Rig::relaying(&rustls::version::TLS13, Tls12Close::Strict);
    rig.client_send(b"before");
    rig.backend_send(b"before");
    rig.run();
    rig.client.refresh_traffic_keys().unwrap();
    rig.client_send(b"after");
    rig.backend_send(b"after");
    rig.run();
    assert_eq!(rig.b.output, b"beforeafter");
    assert_eq!(rig.received, b"beforeafter");
    assert!(rig.client_error.is_none());
    assert_eq!(rig.status, Status::Continue);
}
