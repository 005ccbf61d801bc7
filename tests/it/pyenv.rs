//! Python servers for tests: a virtualenv with pinned packages from PyPI,
//! kept under `~/.cache/etl-test/` (built once, under a lock, rebuilt when
//! incomplete), and a server process started in its own process group on
//! 127.0.0.1, stopped with the whole group when dropped.
//!
//! Tests that need one skip, printing why, only when Python or the package
//! cannot be installed; a server that installs but does not come up fails.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd` to completion within `limit`; its combined output, or why it failed.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<String, String> {
    let log = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let what = format!("{cmd:?}");
    let out = log.as_file().try_clone().map_err(|e| e.to_string())?;
    let err = log.as_file().try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            return Err(format!("{what}: still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut out = String::new();
    let _ = log.reopen().and_then(|mut f| f.read_to_string(&mut out));
    if status.success() {
        Ok(out)
    } else {
        let tail: Vec<&str> = out.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{what}: {status}\n{}", tail.join("\n")))
    }
}

/// A virtualenv named `name` with `packages` installed: its directory, or
/// why there is none.
pub fn venv(name: &str, packages: &[&str]) -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let cache = PathBuf::from(home).join(".cache").join("etl-test");
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let venv = cache.join(format!("{name}-venv"));
    let ready = venv.join(".etl-ready");
    // One installer at a time (test processes of several checkouts share the cache).
    let lock = File::create(cache.join(format!("{name}-venv.lock"))).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    if ready.exists() {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    eprintln!(
        "installing {} into {} (once)",
        packages.join(" "),
        venv.display()
    );
    run(
        Command::new("python3").arg("-m").arg("venv").arg(&venv),
        Duration::from_secs(300),
    )?;
    run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--disable-pip-version-check", "--quiet"])
            .args(packages),
        Duration::from_secs(1800),
    )?;
    File::create(&ready).map_err(|e| e.to_string())?;
    Ok(venv)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process in its own process group, its output in `dir/server.log`.
pub struct Server {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Start `cmd` (output to the log) and wait until `ready(port)` holds.
    pub fn start(
        mut cmd: Command,
        dir: tempfile::TempDir,
        port: u16,
        what: &str,
        ready: impl Fn(u16) -> bool,
    ) -> Server {
        use std::os::unix::process::CommandExt;
        let log = File::create(dir.path().join("server.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let mut server = Server { child, dir };
        let started = Instant::now();
        loop {
            if ready(port) {
                eprintln!("{what} up in {:.1}s", started.elapsed().as_secs_f64());
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{what} exited ({status}):\n{}", server.log());
            }
            if started.elapsed() > Duration::from_secs(180) {
                panic!("{what} not ready after 180 s:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET to 127.0.0.1:`port`: status code and body, if any answer came.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = format!("127.0.0.1:{port}");
    let mut conn = std::net::TcpStream::connect(&addr).ok()?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The directory of a file in the venv's `bin`.
pub fn bin(venv: &Path, name: &str) -> PathBuf {
    venv.join("bin").join(name)
}
