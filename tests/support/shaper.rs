//! A WAN in front of a server, on loopback: each direction is delayed by a fixed one-way
//! latency (pipelined, as on a real link: bytes in flight do not wait for each other) and paced
//! to a bandwidth that every connection through it shares, as the connections of a NAT gateway
//! share its path to Atlas (pacing each connection alone would let a tool with more
//! connections use more link than there is). It counts the bytes it carries each way. For
//! benchmarks of what users feel against a remote Atlas.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The link's shape.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// One-way latency.
    pub delay: Duration,
    /// Bytes per second in each direction, shared by every connection.
    pub bytes_per_sec: u64,
}

/// One direction of the link: when it is free to send the next byte, and what it carried.
#[derive(Default)]
struct Lane {
    free_at: Mutex<Option<Instant>>,
    carried: AtomicU64,
}

/// The running shaper; stops when dropped.
pub struct Shaper {
    /// Its port on 127.0.0.1.
    pub port: u16,
    up: Arc<Lane>,
    down: Arc<Lane>,
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
        let (up, down) = (Arc::new(Lane::default()), Arc::new(Lane::default()));
        let (u, d) = (up.clone(), down.clone());
        let (port, stop) = crate::tcpfault::listen(move |client| {
            let (u, d) = (u.clone(), d.clone());
            async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(direction(cr, sw, link, u));
                tokio::spawn(direction(sr, cw, link, d));
            }
        });
        Shaper {
            port,
            up,
            down,
            stop: Some(stop),
        }
    }

    /// Bytes carried so far towards the server (`.0`) and back from it (`.1`).
    pub fn carried(&self) -> (u64, u64) {
        (
            self.up.carried.load(Ordering::Relaxed),
            self.down.carried.load(Ordering::Relaxed),
        )
    }
}

/// One direction of one connection: chunks are stamped when they arrive, released `delay`
/// later, and paced on the lane every connection shares.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link, lane: Arc<Lane>) {
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
    while let Some((due, bytes)) = rx.recv().await {
        let airtime = Duration::from_secs_f64(bytes.len() as f64 / link.bytes_per_sec as f64);
        // Book the chunk's airtime on the shared lane: it goes when both it is due and the
        // link has finished what was booked before it.
        let start = match lane.free_at.lock() {
            Ok(mut free) => {
                let start = free.map_or(due, |f| f.max(due));
                *free = Some(start + airtime);
                start
            }
            Err(_) => due,
        };
        tokio::time::sleep_until(start.into()).await;
        lane.carried
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    reader.abort();
}
