//! The two system calls the standard library does not wrap: attaching a file to a TUN device
//! (the `TUNSETIFF` ioctl) and catching signals. The only unsafe code of the crate.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags at the start of the union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _union_rest: [u8; 22],
}

/// Opens the TUN device `name` (creating it when absent, gone again when the file is closed),
/// without packet information: each read is one IP packet, each write sends one.
pub fn open_tun(name: &str) -> io::Result<File> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _union_rest: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the descriptor is open for the call's duration, and `req` is a valid, initialised
    // `struct ifreq` (40 bytes) that outlives it; the kernel reads it and writes the name back.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Signals caught so far, one bit per signal number; taken (cleared) by [`take_signals`].
static CAUGHT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // an atomic store is async-signal-safe
    CAUGHT.fetch_or(1 << (sig as u32 & 31), Ordering::SeqCst);
}

/// Catches `signals` from now on instead of their default action.
pub fn catch(signals: &[libc::c_int]) -> io::Result<()> {
    for &sig in signals {
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only does an atomic store, which is async-signal-safe.
        if unsafe { libc::signal(sig, handler) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `sig` was caught since the last call that asked for it; clears it.
pub fn take_signal(sig: libc::c_int) -> bool {
    let bit = 1 << (sig as u32 & 31);
    CAUGHT.fetch_and(!bit, Ordering::SeqCst) & bit != 0
}
