//! What crossed the wire during a data run, as the servers counted it: the copy's report
//! says how many bytes went to Atlas and how far compression took them.

/// What crossed the wire during a data run, as the two servers counted it
/// (`serverStatus.network`: every client of theirs, which on a migration's target is this
/// run). `None` where a server does not say (Atlas's shared tiers report a subset).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct WireReport {
    /// Bytes the target received (what went to Atlas).
    pub to_target: Option<u64>,
    /// Bytes the target sent.
    pub from_target: Option<u64>,
    /// Bytes the source sent (what was read).
    pub from_source: Option<u64>,
    /// Bytes the source received.
    pub to_source: Option<u64>,
    /// The documents' size over the bytes to the target (2.0: half the data crossed).
    pub compression_ratio: Option<f64>,
}

/// How long the counters may take: they are a report, never worth holding a run for (a
/// stalled link says so through the watchdog, and the report then has no numbers).
const COUNTERS: std::time::Duration = std::time::Duration::from_secs(5);

/// A server's `(bytesIn, bytesOut)` so far.
pub async fn counters(m: &crate::mongo::Mongo) -> Option<(u64, u64)> {
    use mongodb::bson::doc;
    let what = format!("{}: reading its traffic counters (serverStatus)", m.role);
    let _w = crate::watch::waiting_on(&what);
    let admin = m.client.database("admin");
    let ask = admin.run_command(
        doc! {"serverStatus": 1, "repl": 0, "metrics": 0, "locks": 0, "wiredTiger": 0},
    );
    let s = tokio::time::timeout(COUNTERS, ask).await.ok()?.ok()?;
    let net = s.get_document("network").ok()?;
    let n = |k: &str| {
        net.get(k)
            .and_then(crate::mongo::as_i64)
            .map(|v| v.max(0) as u64)
    };
    // bytesIn/Out count messages once decompressed; physicalBytesIn/Out (4.2 and newer) are
    // what crossed the wire.
    let pick = |physical: &str, logical: &str| n(physical).or_else(|| n(logical));
    Some((
        pick("physicalBytesIn", "bytesIn")?,
        pick("physicalBytesOut", "bytesOut")?,
    ))
}

/// The counters of both servers, taken before a run.
pub struct WireStart(Option<(u64, u64)>, Option<(u64, u64)>);

impl WireStart {
    /// Reads both servers' counters.
    pub async fn take(src: &crate::mongo::Mongo, dst: &crate::mongo::Mongo) -> WireStart {
        let (s, d) = tokio::join!(counters(src), counters(dst));
        WireStart(s, d)
    }

    /// What crossed since, for `data` bytes of documents copied.
    pub async fn since(
        &self,
        src: &crate::mongo::Mongo,
        dst: &crate::mongo::Mongo,
        data: u64,
    ) -> WireReport {
        let (s, d) = tokio::join!(counters(src), counters(dst));
        let delta = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
            (Some(a), Some(b)) => (Some(b.0.saturating_sub(a.0)), Some(b.1.saturating_sub(a.1))),
            _ => (None, None),
        };
        let (to_source, from_source) = delta(self.0, s);
        let (to_target, from_target) = delta(self.1, d);
        WireReport {
            to_target,
            from_target,
            from_source,
            to_source,
            compression_ratio: to_target
                .filter(|t| *t > 0 && data > 0)
                .map(|t| data as f64 / t as f64),
        }
    }
}

impl WireReport {
    /// `; 12.3 MiB to Atlas on the wire (0.41× the data)`, or nothing when not counted.
    pub fn summary(&self, data: u64) -> String {
        match self.to_target {
            Some(t) if data > 0 => format!(
                "; {} to the target on the wire ({:.2}× the data)",
                crate::units::bytes(t as i64),
                t as f64 / data as f64
            ),
            _ => String::new(),
        }
    }
}

/// How often the copy reads the target's counters for its progress line.
const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Tells `observer` the rate at which bytes reach the target, every few seconds, until
/// dropped (it never ends by itself). Stops asking once the target does not answer (a shared
/// tier that hides its counters): the line then shows documents alone.
pub async fn watch_rate(
    dst: &crate::mongo::Mongo,
    observer: &dyn crate::mongo::observe::Observer,
) -> std::convert::Infallible {
    let Some(mut last) = counters(dst).await else {
        return std::future::pending().await;
    };
    let mut at = std::time::Instant::now();
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(now) = counters(dst).await else {
            return std::future::pending().await;
        };
        let secs = at.elapsed().as_secs_f64();
        at = std::time::Instant::now();
        if secs > 0.0 {
            observer.wire(now.0.saturating_sub(last.0) as f64 / secs);
        }
        last = now;
    }
}
