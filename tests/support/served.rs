//! A real `postmortem serve` process for end-to-end tests: started on port 0,
//! ready when it prints its address, killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Served {
    child: Option<Child>,
    pub url: String,
    /// Keeps a config written by [`serve`] alive for the process's lifetime.
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Served {
    /// Sends `sig` (e.g. `-TERM`, `-KILL`) and waits, at most 30 s, for the exit.
    #[allow(dead_code)]
    pub fn stop(mut self, sig: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(Duration::from_secs(30)).expect("the gateway exits within 30 s of the signal").unwrap()
    }
}

/// Serves `config` written to a temporary directory.
#[allow(dead_code)]
pub fn serve(config: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut s = serve_file(&path);
    s._dir = Some(dir);
    s
}

/// Serves the config file at `path` (its default database sits beside it).
pub fn serve_file(path: &Path) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_postmortem"))
        .args(["serve", "--config", path.to_str().unwrap(), "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("postmortem serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("postmortem listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("the gateway printed its address");
    Served { child: Some(child), url, _dir: None }
}
