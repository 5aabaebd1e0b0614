//! The systemd notification protocol (`sd_notify(3)`), for `Type=notify` units: readiness,
//! status, stopping and watchdog pings, sent as datagrams to `$NOTIFY_SOCKET`.
//!
//! It lives here, not in either binary, because both the agent and the control plane send
//! the same messages and this is the one crate both depend on. It needs no new dependency:
//! a datagram to a Unix socket is all the protocol is. Outside systemd (no `NOTIFY_SOCKET`)
//! every call does nothing, so the binaries behave the same when started by hand.

use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The socket systemd listens on; absent when not started by systemd as `Type=notify`.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// Microseconds of the unit's `WatchdogSec=`, set by systemd when it is on.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The process the watchdog settings are meant for (a child must not ping for its parent).
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Sends `state` (newline-separated `KEY=VALUE` lines, e.g. `READY=1`) to the socket named by
/// `$NOTIFY_SOCKET`. `Ok(false)` when the variable is not set (not under systemd).
pub fn notify(state: &str) -> io::Result<bool> {
    match std::env::var_os(NOTIFY_SOCKET) {
        Some(socket) if !socket.is_empty() => notify_to(&socket, state).map(|()| true),
        _ => Ok(false),
    }
}

/// Sends `state` to `socket`: a filesystem path, or an abstract socket when it starts with
/// `@` (systemd's spelling of a leading NUL byte).
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_send(&sock, name, state.as_bytes())?
    } else if bytes.first() == Some(&b'/') {
        sock.send_to(state.as_bytes(), socket)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET}={} is neither an absolute path nor an abstract socket (@name)",
                socket.to_string_lossy()
            ),
        ));
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes to {NOTIFY_SOCKET}", state.len()),
        ));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn abstract_send(sock: &UnixDatagram, name: &[u8], data: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(data, &addr)
}

#[cfg(not(target_os = "linux"))]
fn abstract_send(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract notification sockets exist on Linux only",
    ))
}

/// [`notify`], logging a failure instead of returning it: a service that cannot tell systemd
/// it is ready is restarted by systemd, which is the visible outcome; nothing else to do here.
pub fn notify_or_log(state: &str) {
    if let Err(e) = notify(state) {
        eprintln!("warning: cannot notify systemd ({state:?}): {e}");
    }
}

/// Tells systemd the service is ready, with a human-readable status line.
pub fn ready(status: &str) {
    notify_or_log(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) {
    notify_or_log(&format!("STATUS={}", one_line(status)));
}

/// Tells systemd the service is shutting down on purpose.
pub fn stopping() {
    notify_or_log("STOPPING=1");
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// How often to ping the watchdog: half of `WatchdogSec=` (as `sd_watchdog_enabled(3)`
/// advises), or `None` when the watchdog is off or meant for another process.
pub fn watchdog_interval() -> Option<Duration> {
    let get = |name| std::env::var(name).ok();
    watchdog_interval_from(get(WATCHDOG_USEC), get(WATCHDOG_PID), std::process::id())
}

fn watchdog_interval_from(
    usec: Option<String>,
    pid: Option<String>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own_pid) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// Pings the watchdog (`WATCHDOG=1`) every [`watchdog_interval`] for as long as it is polled;
/// returns at once when the watchdog is off. `sleep` is the runtime's timer (e.g.
/// `tokio::time::sleep`), so this crate needs no runtime of its own; run it as a task of the
/// runtime that does the service's work, so a stuck runtime stops the pings and systemd
/// restarts the service.
pub async fn watchdog<S, F>(sleep: S)
where
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let Some(every) = watchdog_interval() else {
        return;
    };
    loop {
        notify_or_log("WATCHDOG=1");
        sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir =
                std::env::temp_dir().join(format!("sco-notify-{}-{nanos}", std::process::id()));
            std::fs::create_dir(&dir).expect("create temp dir");
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn receive(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram arrives");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8")
    }

    // The only test of this crate that touches NOTIFY_SOCKET, so setting it races nothing.
    #[test]
    fn ready_reaches_the_socket_named_by_notify_socket() {
        let dir = TempDir::new();
        let path = dir.0.join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind notify socket");
        std::env::set_var(NOTIFY_SOCKET, &path);
        let sent = notify("READY=1\nSTATUS=serving on 127.0.0.1:8080");
        ready("listening\non two lines");
        std::env::remove_var(NOTIFY_SOCKET);
        assert!(sent.expect("sent"), "NOTIFY_SOCKET was set");
        assert_eq!(
            receive(&listener),
            "READY=1\nSTATUS=serving on 127.0.0.1:8080"
        );
        assert_eq!(receive(&listener), "READY=1\nSTATUS=listening on two lines");
        // Unset: nothing to do, and no error.
        assert!(!notify("READY=1").expect("no socket is fine"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_sockets_are_spelled_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sco-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        notify_to(OsStr::new(&format!("@{name}")), "WATCHDOG=1").expect("sent");
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn a_relative_socket_path_is_refused_with_the_variable_named() {
        let err = notify_to(OsStr::new("relative.sock"), "READY=1").expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(NOTIFY_SOCKET), "{err}");
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_its_own_pid() {
        let us = |s: &str| Some(s.to_string());
        for (usec, pid, expected) in [
            (us("30000000"), None, Some(Duration::from_secs(15))),
            (us("30000000"), us("42"), Some(Duration::from_secs(15))),
            (us("30000000"), us("43"), None),
            (us("0"), None, None),
            (us("soon"), None, None),
            (None, us("42"), None),
        ] {
            assert_eq!(
                watchdog_interval_from(usec.clone(), pid.clone(), 42),
                expected,
                "{usec:?} {pid:?}"
            );
        }
    }
}
