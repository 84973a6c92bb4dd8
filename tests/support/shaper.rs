//! A WAN in front of a server, on loopback: each direction of each connection is delayed by a
//! fixed one-way latency (pipelined, as on a real link: bytes in flight do not wait for each
//! other) and paced to a bandwidth. For benchmarks of what users feel against a remote Atlas.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The link's shape.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// One-way latency.
    pub delay: Duration,
    /// Bytes per second, per direction of each connection.
    pub bytes_per_sec: u64,
}

/// The running shaper; stops when dropped.
pub struct Shaper {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Shaper {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Shaper {
    /// A shaped link to `127.0.0.1:upstream`, on its own thread.
    pub fn start(upstream: u16, link: Link) -> Shaper {
        let (port, stop) = crate::tcpfault::listen(move |client| async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(direction(cr, sw, link));
            tokio::spawn(direction(sr, cw, link));
        });
        Shaper {
            port,
            stop: Some(stop),
        }
    }
}

/// One direction: chunks are stamped when they arrive, released `delay` later, and paced.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + link.delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    // The pacing clock: when the link is free to send the next byte.
    let mut free_at = Instant::now();
    while let Some((due, bytes)) = rx.recv().await {
        let start = due.max(free_at);
        tokio::time::sleep_until(start.into()).await;
        let airtime = Duration::from_secs_f64(bytes.len() as f64 / link.bytes_per_sec as f64);
        free_at = start + airtime;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    reader.abort();
}
