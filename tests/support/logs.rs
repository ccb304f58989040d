//! Every log line of a test process, for tests that count what the
//! gateways logged (a global subscriber: the gateways' background tasks log
//! from the runtime's threads). Tests pick theirs by their Redis port.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, OnceLock};

/// The lines so far; the first call installs the subscriber.
pub fn log_lines() -> Arc<Mutex<Vec<String>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LINES
        .get_or_init(|| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || LineWriter(sink.clone()))
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            lines
        })
        .clone()
}

struct LineWriter(Arc<Mutex<Vec<String>>>);

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines about the Redis on `port` that contain `text`.
pub fn logged(port: u16, text: &str) -> usize {
    let needle = format!("127.0.0.1:{port}/");
    log_lines().lock().unwrap().iter().filter(|l| l.contains(&needle) && l.contains(text)).count()
}
