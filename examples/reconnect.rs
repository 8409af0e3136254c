//! A client of a TCP server that survives a restart: its connection
//! cannot come back (the peer is outside the process), so a restart with
//! `--unrestorable=socket` gives it a dropped connection at the socket's
//! number, and its `on_restart` hook connects again and puts the new
//! connection at that very number (the program's `TcpStream` goes on
//! working). A request the dropped connection failed is sent again.
//!
//! usage: reconnect DIR ADDR [COUNT]: sends "ping N" lines to ADDR (an
//! echo server answering "pong N"), prints each answer, 150 ms apart.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The connection and how many times the hook made it again.
struct Conn {
    stream: TcpStream,
    generation: u64,
}

fn ask(c: &mut Conn, i: u64) -> std::io::Result<String> {
    writeln!(c.stream, "ping {i}")?;
    let mut line = String::new();
    if BufReader::new(&c.stream).read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(addr)) = (args.next(), args.next()) else {
        eprintln!("usage: reconnect DIR ADDR [COUNT]");
        std::process::exit(2);
    };
    let count: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let _ckpt = selfckpt::Checkpointer::builder().dir(dir).install()?;
    let conn = Arc::new((
        Mutex::new(Conn {
            stream: TcpStream::connect(&addr)?,
            generation: 0,
        }),
        Condvar::new(),
    ));
    let hook_conn = conn.clone();
    selfckpt::on_restart(move |_| {
        // The dropped stand-in is at the socket's number: a new
        // connection takes its place there.
        let fresh = TcpStream::connect(&addr)
            .map_err(|e| selfckpt::HookError::new(format!("reconnect to {addr}: {e}")))?;
        let (lock, cv) = &*hook_conn;
        let mut c = lock
            .lock()
            .map_err(|_| selfckpt::HookError::new("poisoned"))?;
        // SAFETY: dup2 of our new connection onto the number the program's
        // stream owns; `fresh` is closed when dropped.
        if unsafe { libc::dup2(fresh.as_raw_fd(), c.stream.as_raw_fd()) } < 0 {
            return Err(selfckpt::HookError::new("dup2 failed"));
        }
        c.generation += 1;
        cv.notify_all();
        eprintln!("reconnect: connected again to {addr}");
        Ok(())
    });
    let (lock, cv) = &*conn;
    let mut i = 0;
    while i < count {
        let mut c = lock.lock().map_err(|_| "poisoned")?;
        match ask(&mut c, i) {
            Ok(reply) => {
                println!("{reply}");
                i += 1;
                drop(c);
                std::thread::sleep(Duration::from_millis(150));
            }
            Err(e) => {
                // A dropped connection: wait for the restart hook's new one.
                let seen = c.generation;
                let (c, timeout) = cv
                    .wait_timeout_while(c, Duration::from_secs(10), |c| c.generation == seen)
                    .map_err(|_| "poisoned")?;
                if timeout.timed_out() {
                    return Err(format!("connection lost: {e}").into());
                }
                drop(c);
            }
        }
    }
    println!("done");
    Ok(())
}
