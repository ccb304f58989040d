//! The floor: a plain nginx reverse proxy in front of the bench's upstream,
//! with upstream keep-alive and no buffering (so streams pass event by
//! event). Connections are kept for the whole run on both sides (nginx
//! closes them after 1,000 requests by default, which the other arms do
//! not do). What a gateway costs beyond it is the gateway's own work. nginx
//! comes from Debian (`apt-get install nginx`); without it the bench says
//! so and compares against direct only.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// nginx's binary, if installed (it lives in /usr/sbin, often not on PATH).
pub(crate) fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/usr/local/nginx/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// The config: one worker per core, as a production proxy runs, listening
/// on 127.0.0.1:`port` and proxying to `upstream` (`host:port`).
pub fn config(dir: &Path, port: u16, upstream: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes auto;\ndaemon off;\nmaster_process on;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         upstream bench_upstream {{ server {upstream}; keepalive 128; keepalive_requests 1000000; }}\n  \
         server {{\n    listen 127.0.0.1:{port};\n    keepalive_requests 1000000;\n    location / {{\n      proxy_pass http://bench_upstream;\n      \
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n      \
         proxy_read_timeout {read}s;\n    }}\n  }}\n}}\n",
        read = Duration::from_secs(60).as_secs()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_config_listens_on_loopback_and_keeps_upstream_connections() {
        let c = super::config(std::path::Path::new("/tmp/x"), 8080, "127.0.0.1:9000");
        assert!(c.contains("listen 127.0.0.1:8080;"));
        assert!(c.contains("server 127.0.0.1:9000; keepalive 128; keepalive_requests 1000000;"));
        assert!(c.contains("proxy_buffering off;"));
    }
}
