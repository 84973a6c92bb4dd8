//! A TCP fault proxy for tests, on loopback: between the tool and a Mongo server it can cut
//! every connection after N bytes, stall traffic, or refuse new connections for a while.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to traffic right now.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Cut each connection once this many bytes have come back from the server.
    pub drop_after_bytes: Option<usize>,
    /// Hold every chunk until this moment.
    pub stall_until: Option<Instant>,
    /// Close new connections at once until this moment.
    pub refuse_until: Option<Instant>,
    /// Hold every chunk this long (either direction): a slow link.
    pub delay: Option<std::time::Duration>,
    /// Pass at most this many bytes per second per connection and direction.
    pub bytes_per_sec: Option<u64>,
    /// Replace these bytes by those (of the same length) in what the server sends: a server
    /// that says something else of itself (e.g. an older wire version in its `hello`).
    pub rewrite_down: Option<(Vec<u8>, Vec<u8>)>,
}

/// The running proxy; stops when dropped.
pub struct TcpFault {
    /// Its port on 127.0.0.1.
    pub port: u16,
    faults: Arc<Mutex<Faults>>,
    cuts: Arc<Mutex<usize>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TcpFault {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl TcpFault {
    /// Starts a proxy to `127.0.0.1:upstream`. It runs on its own thread so tests may block.
    pub fn start(upstream: u16) -> TcpFault {
        let faults: Arc<Mutex<Faults>> = Arc::default();
        let cuts: Arc<Mutex<usize>> = Arc::default();
        let (f, c) = (faults.clone(), cuts.clone());
        let (port, stop) = listen(move |client| {
            let (f, c) = (f.clone(), c.clone());
            async move {
                let _ = relay(client, upstream, f, c).await;
            }
        });
        TcpFault {
            port,
            faults,
            cuts,
            stop: Some(stop),
        }
    }

    /// Changes the faults.
    pub fn set(&self, f: Faults) {
        *self.faults.lock().unwrap() = f;
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> usize {
        *self.cuts.lock().unwrap()
    }
}

/// Accepts connections on a free loopback port, on a runtime thread of its own (so tests may
/// block), handing each to `serve`; stops when the returned sender is dropped or fires.
pub fn listen<F, Fut>(serve: F) -> (u16, tokio::sync::oneshot::Sender<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        tokio::spawn(serve(client));
                    }
                }
            }
        });
        rt.shutdown_background();
    });
    (rx.recv().unwrap(), stop)
}

async fn relay(
    mut client: TcpStream,
    upstream: u16,
    faults: Arc<Mutex<Faults>>,
    cuts: Arc<Mutex<usize>>,
) -> std::io::Result<()> {
    let f = faults.lock().unwrap().clone();
    if f.refuse_until.is_some_and(|t| Instant::now() < t) {
        return Ok(());
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    let mut down = 0usize;
    let mut cbuf = vec![0u8; 64 * 1024];
    let mut sbuf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            n = cr.read(&mut cbuf) => {
                let n = n?;
                if n == 0 { return Ok(()); }
                stall(&faults, n).await;
                sw.write_all(&cbuf[..n]).await?;
            }
            n = sr.read(&mut sbuf) => {
                let n = n?;
                if n == 0 { return Ok(()); }
                stall(&faults, n).await;
                let limit = faults.lock().unwrap().drop_after_bytes;
                if let Some(limit) = limit
                    && down + n >= limit
                {
                    let keep = limit.saturating_sub(down);
                    cw.write_all(&sbuf[..keep]).await?;
                    *cuts.lock().unwrap() += 1;
                    return Ok(());
                }
                down += n;
                let rewrite = faults.lock().unwrap().rewrite_down.clone();
                if let Some((from, to)) = rewrite {
                    replace_all(&mut sbuf[..n], &from, &to);
                }
                cw.write_all(&sbuf[..n]).await?;
            }
        }
    }
}

/// Replaces every `from` in `buf` by `to` (the same length).
fn replace_all(buf: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "a rewrite keeps the length");
    let mut i = 0;
    while i + from.len() <= buf.len() {
        if &buf[i..i + from.len()] == from {
            buf[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
}

/// Waits as the faults say before `n` bytes go on (a stall lifted early lets them go).
async fn stall(faults: &Arc<Mutex<Faults>>, n: usize) {
    loop {
        let until = faults.lock().unwrap().stall_until;
        match until {
            Some(t) if t > Instant::now() => {
                let left = t - Instant::now();
                tokio::time::sleep(left.min(std::time::Duration::from_millis(50))).await;
            }
            _ => break,
        }
    }
    let f = faults.lock().unwrap().clone();
    if let Some(d) = f.delay {
        tokio::time::sleep(d).await;
    }
    if let Some(rate) = f.bytes_per_sec.filter(|r| *r > 0) {
        tokio::time::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64)).await;
    }
}
