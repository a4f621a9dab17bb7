//! Which local process serves the broker: its CPU per record is part of what each system costs.
//!
//! On a machine where the broker shares the cores with the system under test, a system that makes
//! the broker work harder per record (smaller produce requests, transactions) is slowed by that
//! work too, which the system's own CPU time does not show. The benchmark finds the broker by the
//! TCP port of its bootstrap address: the process holding a listening socket on it.

use std::path::Path;

/// TCP state `LISTEN` in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// The pid of the local process listening on the port of `bootstrap` (the first `host:port`), if
/// there is one this user can see.
pub fn broker_pid(bootstrap: &str) -> Option<libc::pid_t> {
    let port = bootstrap
        .split(',')
        .next()?
        .rsplit_once(':')?
        .1
        .trim()
        .parse()
        .ok()?;
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let sockets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .find(|pid| holds_any(&Path::new("/proc").join(pid.to_string()), &sockets))
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp`-format `table`.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let port = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            if local_port == port && *fields.get(3)? == LISTEN {
                fields.get(9).map(|inode| inode.to_string())
            } else {
                None
            }
        })
        .collect()
}

/// Whether the process at `/proc/<pid>` (`dir`) has one of `sockets` open.
fn holds_any(dir: &Path, sockets: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_sockets_on_the_port_are_taken() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4C14 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 81234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4C14 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 81299 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 70001 1 0000000000000000 100 0 0 10 0
";
        // 0x4C14 = 19476; the established connection (state 01) on the same port is not the broker.
        assert_eq!(listening_inodes(table, 19476), ["81234"]);
        assert_eq!(listening_inodes(table, 9092), ["70001"]);
        assert!(listening_inodes(table, 1234).is_empty());
    }

    #[test]
    fn finds_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let me = libc::pid_t::try_from(std::process::id()).expect("pid");
        assert_eq!(broker_pid(&format!("127.0.0.1:{port}")), Some(me));
        drop(listener);
        assert_eq!(broker_pid(&format!("127.0.0.1:{port}")), None);
    }
}
