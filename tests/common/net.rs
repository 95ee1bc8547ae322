//! Loopback: free ports, HTTP, and waiting on a condition or a listener.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::process::Process;

/// A port on loopback that nothing listens on now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different ports on loopback that nothing listens on now: each is held until all are
/// picked, so none is handed out twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] =
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").expect("binding a loopback port"));
    listeners.map(|l| l.local_addr().expect("a bound address").port())
}

/// An HTTP GET on loopback: the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers and body");
    let status = head.split(' ').nth(1).expect("a status").parse().unwrap();
    (status, body.to_owned())
}

/// Polls `condition` until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for_listener(process: &mut Process, port: u16) {
    wait_until(
        &format!("{} to listen on {port}", process.name),
        Duration::from_secs(60),
        || {
            process.assert_running();
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
    );
}

/// The port a weir service serves its status page on, from its log: with `listen` at port 0
/// it is the one the system picked.
pub fn serving_port(process: &mut Process) -> u16 {
    const SAID: &str = "status_page=http://127.0.0.1:";
    let mut port = None;
    wait_until(
        &format!("{} to say where it serves", process.name),
        Duration::from_secs(60),
        || {
            process.assert_running();
            let log = process.log_text();
            port = log.find(SAID).map(|at| {
                let digits: String = log[at + SAID.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().expect("a port number")
            });
            port.is_some()
        },
    );
    port.expect("waited for")
}
