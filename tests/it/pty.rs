//! A program in a pseudo-terminal (util-linux `script`), so its questions are asked for real
//! and Ctrl-C is a real terminal's.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{atlas_uri, clean};
use crate::migrate::Setup;

/// A migrate in a pseudo-terminal (util-linux `script`), so its questions are asked for real.
pub struct Pty {
    /// The `script` process.
    pub child: Child,
    out: Arc<Mutex<String>>,
    seen: usize,
}

impl Pty {
    /// Starts `efs2atlas migrate` (no --yes) for the setup in a pseudo-terminal.
    pub fn start(s: &Setup) -> Pty {
        Pty::start_with(s, &[])
    }

    /// The same with more environment variables.
    pub fn start_with(s: &Setup, env: &[(&str, &str)]) -> Pty {
        let q = |x: &str| format!("'{x}'");
        let cmd = [
            env!("CARGO_BIN_EXE_efs2atlas"),
            "migrate",
            "--cluster",
            &s.fx.cluster,
            "--service",
            &s.fx.service,
            "--journal",
            &s.journal(),
            "--deploy-timeout",
            "20s",
        ]
        .iter()
        .map(|a| q(a))
        .collect::<Vec<_>>()
        .join(" ");
        // `exec`: the program is the terminal's foreground process itself, not a child of a
        // shell that would take Ctrl-C as its own (dash then exits 130 after the program).
        let cmd = format!("exec {cmd}");
        let mut c = clean("script");
        c.args(["-qfec", &cmd, "/dev/null"])
            .env("TERM", "xterm")
            .env("EFS2ATLAS_ATLAS_URI", atlas_uri())
            .env("EFS2ATLAS_SOURCE_URI", s.src.uri())
            .env("EFS2ATLAS_TARGET_URI", s.target_uri())
            .envs(s.acct.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // As every run of the setup: a slowed link means the data's bytes (slow_link).
            .env("EFS2ATLAS_COMPRESSORS", s.wire())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("script (util-linux)");
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Pty {
            child,
            out,
            seen: 0,
        }
    }

    /// Waits until `text` appears after what was already matched; returns the output up to it.
    pub async fn expect(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            {
                let out = self.out.lock().unwrap();
                if let Some(i) = out[self.seen..].find(text) {
                    let upto = out[self.seen..self.seen + i + text.len()].to_string();
                    self.seen += i + text.len();
                    return upto;
                }
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("migrate exited ({st}) before {text:?}:\n{}", self.all());
            }
            assert!(Instant::now() < deadline, "no {text:?} in:\n{}", self.all());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Types `line` and Enter.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// Presses Ctrl-C: the terminal sends SIGINT to the program in the foreground.
    pub fn ctrl_c(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"\x03").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the program to end, its terminal left open (`Child::wait` would close its
    /// input first, which a program reading a question sees as an answer).
    pub async fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.all());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything printed so far.
    pub fn all(&self) -> String {
        self.out.lock().unwrap().clone()
    }
}
