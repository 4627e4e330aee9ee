//! lazyfs: a FUSE pass-through filesystem that loses what was not synced, on command.
//!
//! `schism-lazyfs` mounts a directory that passes everything through to a backing directory,
//! except that written data stays in memory until the file is fsynced and directory-entry
//! changes are undone unless their directory was fsynced (the exact rule is in [`disk`]). A
//! `power-loss` command on its control socket drops all of that, as a machine losing power
//! would; schism's `power-loss` fault sends it after SIGKILLing the node, so the node restarts
//! on exactly what it had made durable. This is Jepsen's LazyFS idea, in Rust.
//!
//! It does not model the kernel's own write-back (unsynced data never reaches the backing
//! directory by itself, except when more than [`disk::MAX_PENDING_BYTES`] is held), hard or
//! symbolic links, extended attributes, or loss of attributes other than the size.
//!
//! The control protocol is one line in, one line out, over a unix stream socket: `status`,
//! `power-loss`, or `power-loss torn SEED`; the answer starts with `ok ` or `error `.

pub mod disk;
pub mod fs;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The filesystem type's subtype: mounts show as `fuse.schism-lazyfs` in `/proc/mounts`.
pub const SUBTYPE: &str = "schism-lazyfs";
/// Longest a control request may take (a power loss of a large unsynced state included).
pub const CONTROL_TIMEOUT_MS: u64 = 10_000;
/// Longest control request line accepted.
const MAX_REQUEST_BYTES: u64 = 256;

/// Executes one control request against the disk and returns the answer line.
pub fn handle(disk: &Arc<Mutex<disk::Disk>>, request: &str) -> String {
    let words: Vec<&str> = request.split_whitespace().collect();
    let mut disk = disk.lock().unwrap_or_else(|p| p.into_inner());
    match words.as_slice() {
        ["status"] => {
            let (bytes, entries) = disk.unsynced();
            format!("ok unsynced {bytes} bytes, {entries} entry changes")
        }
        ["power-loss"] => format!("ok {}", disk.power_loss(None)),
        ["power-loss", "torn", seed] => match seed.parse::<u64>() {
            Ok(seed) => {
                use rand::SeedableRng;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                format!("ok {}", disk.power_loss(Some(&mut rng)))
            }
            Err(_) => format!("error the seed {seed:?} is not a number"),
        },
        _ => format!(
            "error unknown request {request:?}: use status, power-loss or power-loss torn SEED"
        ),
    }
}

/// Serves one control connection: reads one request line, writes the answer.
pub fn serve_connection(disk: &Arc<Mutex<disk::Disk>>, stream: UnixStream) -> std::io::Result<()> {
    use std::io::Read;
    let timeout = Some(Duration::from_millis(CONTROL_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST_BYTES)).read_line(&mut line)?;
    let answer = handle(disk, line.trim());
    (&stream).write_all(format!("{answer}\n").as_bytes())
}

/// Sends one request to a running `schism-lazyfs` and returns its answer (without `ok `), or
/// the daemon's error line as an error.
pub fn request(socket: &Path, request: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("lazyfs control socket {}: {e}", socket.display());
    let stream = UnixStream::connect(socket).map_err(fail)?;
    let timeout = Some(Duration::from_millis(CONTROL_TIMEOUT_MS));
    stream.set_read_timeout(timeout).map_err(fail)?;
    stream.set_write_timeout(timeout).map_err(fail)?;
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .map_err(fail)?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(fail)?;
    let line = line.trim();
    match line.strip_prefix("ok") {
        Some(rest) => Ok(rest.trim().to_string()),
        None if line.is_empty() => Err(format!(
            "lazyfs control socket {}: no answer",
            socket.display()
        )),
        None => Err(line.strip_prefix("error ").unwrap_or(line).to_string()),
    }
}

/// Why this machine cannot mount a lazyfs, in one line; `None` when it can.
pub fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "lazyfs (the power-loss fault) mounts a FUSE filesystem and needs root".to_string(),
        );
    }
    if !Path::new("/dev/fuse").exists() {
        return Some(
            "lazyfs (the power-loss fault) needs /dev/fuse, which does not exist: load the fuse module"
                .to_string(),
        );
    }
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| d.join("fusermount3").is_file())
    });
    if !found {
        return Some(
            "lazyfs (the power-loss fault) needs `fusermount3`, which is not installed: install fuse3"
                .to_string(),
        );
    }
    None
}
