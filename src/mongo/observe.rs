//! Progress reports from the data steps: the terminal draws them, library code never prints.

/// Receives progress; the terminal UI implements it, library code never prints.
pub trait Observer: Send + Sync {
    /// A collection starts (or resumes with `done_docs` already copied).
    fn start(&self, _ns: &str, _estimated_docs: u64, _done_docs: u64, _done_bytes: u64) {}
    /// A batch was acknowledged.
    fn progress(&self, _ns: &str, _docs: u64, _bytes: u64) {}
    /// A collection is finished.
    fn finish(&self, _ns: &str) {}
    /// Bytes a second the target received on the wire lately, compressed as they crossed
    /// (the target's own counters).
    fn wire(&self, _to_target_per_sec: f64) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}
