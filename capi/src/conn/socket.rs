//! The descriptors a C program hands over: checked before they are taken,
//! then owned as non-blocking mio sockets.

use std::ffi::c_int;
use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, RawFd};

use mio::net::TcpStream;

/// Checks that `fd` is an open, connected stream socket with an IP peer;
/// its address, in the one form client addresses are shown in.
pub(super) fn check_client_fd(fd: RawFd) -> Result<SocketAddr, &'static str> {
    check_stream_socket(fd)?;
    // SAFETY: `fd` is an open socket (checked above); ManuallyDrop keeps us
    // from closing it, since it is not ours yet.
    let sock = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    // One form per client (IPv4, not ::ffff:a.b.c.d), as in the daemon.
    sock.peer_addr()
        .map(nctls::identity::addr::canonical)
        .map_err(|_| "client_fd is not a connected TCP socket")
}

/// Checks that `fd` is an open stream socket (TCP or unix).
pub(super) fn check_stream_socket(fd: RawFd) -> Result<(), &'static str> {
    if fd < 0 {
        return Err("the descriptor is negative");
    }
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 || kind != libc::SOCK_STREAM {
        return Err("the descriptor is not an open stream socket");
    }
    Ok(())
}

/// Takes ownership of a checked socket, non-blocking, as a mio stream; on
/// error the descriptor is left open and not owned.
///
/// # Safety
/// `fd` is an open stream socket that nobody else will close once this succeeds.
pub(super) unsafe fn own_socket(fd: RawFd) -> io::Result<TcpStream> {
    // SAFETY: an open socket; ManuallyDrop keeps it unowned until the end.
    let std = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    std.set_nonblocking(true)?;
    Ok(TcpStream::from_std(ManuallyDrop::into_inner(std)))
}

/// Closes a descriptor handed over to nctls that it could not use.
///
/// # Safety
/// `fd` was handed over and nothing else owns or closes it.
pub(super) unsafe fn close(fd: RawFd) {
    // SAFETY: ours alone (the caller's contract).
    unsafe { libc::close(fd) };
}
